#!/bin/sh
# The lab's vault secret (tools/lab.py writes it at create); before create, a placeholder that
# nothing is encrypted with.
cat "$MOLECULE_EPHEMERAL_DIRECTORY/lab/vault-pass" 2>/dev/null || echo "no-lab-yet"
