"""The role's molecule scenario (roles/rotate/molecule/default) as one fleet test, so that it runs
beside the other fleet test files instead of before all of them. Its lab (tools/lab.py) picks its
own prefix and subnet; molecule keeps its working files in the checkout's .ansible/."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.ansible_run import collections_path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

pytestmark = [
    pytest.mark.fleet,
    pytest.mark.skipif(os.geteuid() != 0, reason="the fleet needs root: network namespaces, mounts, sshd"),
]


def test_molecule_default_scenario(tmp_path):
    env = dict(os.environ, PATH=f"{BIN}:{os.environ.get('PATH', '')}",
               ANSIBLE_COLLECTIONS_PATH=collections_path())
    log = tmp_path / "molecule.log"
    with open(log, "w") as out:
        proc = subprocess.run([str(BIN / "molecule"), "test"], cwd=REPO / "roles" / "rotate", env=env,
                              stdout=out, stderr=subprocess.STDOUT, timeout=900, check=False)
    assert proc.returncode == 0, f"molecule test exited {proc.returncode}; its log {log}:\n{log.read_text()[-8000:]}"
