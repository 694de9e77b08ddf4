"""Run ansible-playbook as a user would, and read back every task result.

Test-only. Results come from the record_results callback, so they are what Ansible itself
would show (no_log results arrive censored).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
CALLBACKS = Path(__file__).resolve().parent / "callback_plugins"


def collections_path() -> str:
    """The directory holding ansible_collections/rekey/aws (made by `make collection-link`)."""
    return os.environ.get("ANSIBLE_COLLECTIONS_PATH", str(REPO / ".venv" / "collections"))


@dataclass
class PlaybookRun:
    rc: int
    stdout: str
    stderr: str
    results: list[dict] = field(default_factory=list)

    def task(self, name: str, host: str | None = None) -> dict:
        """The last result of the task with this name (and host)."""
        found = [r for r in self.results if r["task"] == name and (host is None or r["host"] == host)]
        if not found:
            raise AssertionError(f"no result for task {name!r}; tasks seen: {[r['task'] for r in self.results]}")
        return found[-1]

    @property
    def changed(self) -> list[dict]:
        return [r for r in self.results if r["changed"]]

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.results if r["status"] == "failed"]


def run_playbook(playbook: str | Path | list, *, extra_vars: dict | None = None, check: bool = False,
                 diff: bool = False, inventory: str | None = None, env: dict | None = None,
                 args: list[str] | None = None, timeout: int = 600) -> PlaybookRun:
    """Run a playbook file, or a list of plays given as Python data."""
    with tempfile.TemporaryDirectory(prefix="rekey-run-") as tmp:
        tmp = Path(tmp)
        if isinstance(playbook, list):
            path = tmp / "playbook.yml"
            path.write_text(yaml.safe_dump(playbook, sort_keys=False))
        else:
            path = Path(playbook)
        results_file = tmp / "results.jsonl"
        cmd = [str(Path(sys.executable).parent / "ansible-playbook"), str(path),
               "-i", inventory or "localhost,"]
        if extra_vars:
            vars_file = tmp / "extra_vars.json"
            vars_file.write_text(json.dumps(extra_vars))
            vars_file.chmod(0o600)
            cmd += ["-e", f"@{vars_file}"]
        if check:
            cmd.append("--check")
        if diff:
            cmd.append("--diff")
        cmd += args or []
        run_env = dict(os.environ)
        run_env.update({
            "ANSIBLE_COLLECTIONS_PATH": collections_path(),
            "ANSIBLE_CALLBACK_PLUGINS": str(CALLBACKS),
            "ANSIBLE_CALLBACKS_ENABLED": "record_results",
            "REKEY_TEST_RESULTS": str(results_file),
            "ANSIBLE_RETRY_FILES_ENABLED": "false",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
            "ANSIBLE_LOCALHOST_WARNING": "false",
            "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
        })
        run_env.update(env or {})
        proc = subprocess.run(cmd, capture_output=True, text=True, env=run_env, timeout=timeout, check=False,
                              cwd=str(REPO))
        results = []
        if results_file.exists():
            results = [json.loads(line) for line in results_file.read_text().splitlines() if line]
        return PlaybookRun(proc.returncode, proc.stdout, proc.stderr, results)


def local_play(tasks: list, *, name: str = "test", vars: dict | None = None,
               module_defaults: dict | None = None) -> list:
    """One play on localhost with a local connection."""
    play = {"name": name, "hosts": "localhost", "connection": "local", "gather_facts": False,
            "tasks": tasks}
    if vars:
        play["vars"] = vars
    if module_defaults:
        play["module_defaults"] = module_defaults
    return [play]
