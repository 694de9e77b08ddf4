#!/usr/bin/env bash
# Prints the newest Python >= 3.12 on this machine (ansible-core 2.21 needs 3.12).
set -euo pipefail
for cand in python3.13 python3.12 "$HOME"/.pyenv/versions/3.13*/bin/python3 "$HOME"/.pyenv/versions/3.12*/bin/python3 python3; do
  path=$(command -v "$cand" 2>/dev/null) || continue
  if "$path" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then
    echo "$path"; exit 0
  fi
done
echo "find_python: no Python >= 3.12 found (looked at python3.13, python3.12, ~/.pyenv/versions, python3); ansible-core 2.21 needs one" >&2
exit 1
