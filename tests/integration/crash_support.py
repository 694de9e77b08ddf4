"""Test-only helpers for killing the rotation at a boundary: ansible-playbook started in a process
group of its own, its stdout read line by line, the users' durable state and lock read out of band
(IAM user tags, with boto3, never with the modules under test), and a watcher that polls IAM for
the number of keys during the whole test."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from tests.integration.rotate_support import PLAYBOOK
from tests.support.ansible_run import collections_path

PHASE_TAG, RUN_TAG = "rekey:phase", "rekey:run"
LOCK_RUN_TAG, LOCK_HOLDER_TAG, LOCK_UNTIL_TAG = "rekey:lock-run", "rekey:lock-holder", "rekey:lock-until"


def tags(lab, user: str) -> dict[str, str]:
    """The rekey:* tags of the user, out of band."""
    found = lab.ep.iam().list_user_tags(UserName=user)["Tags"]
    return {t["Key"]: t["Value"] for t in found if t["Key"].startswith("rekey:")}


def settled_tags(lab, user: str, quiet_s: float = 0.5) -> dict[str, str]:
    """The user's rekey:* tags once a killed run's last request has landed: a request already sent
    when the run was killed still reaches IAM, so the tags are read until two reads agree."""
    seen = tags(lab, user)
    while True:
        time.sleep(quiet_s)
        again = tags(lab, user)
        if again == seen:
            return seen
        seen = again


def lock_expired(tag_values: dict[str, str]) -> bool:
    until = tag_values.get(LOCK_UNTIL_TAG)
    return until is None or datetime.fromisoformat(until) <= datetime.now(timezone.utc)


def wait_lock_expired(lab, user: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not lock_expired(tags(lab, user)):
        if time.monotonic() > deadline:
            raise AssertionError(f"the lock of {user} did not expire: {tags(lab, user)}")
        time.sleep(0.2)


class KeyWatcher:
    """Polls the user's keys (out of band) until stopped; keeps the most ever seen at once."""

    def __init__(self, lab, user: str, interval: float = 0.1):
        self.lab, self.user, self.interval = lab, user, interval
        self.most = 0
        self.seen: list[dict[str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        iam = self.lab.ep.iam()
        while not self._stop.is_set():
            try:
                meta = iam.list_access_keys(UserName=self.user)["AccessKeyMetadata"]
            except Exception:  # pylint: disable=broad-exception-caught  # a fault may refuse a poll
                meta = None
            if meta is not None:
                keys = {k["AccessKeyId"]: k["Status"] for k in meta}
                self.most = max(self.most, len(keys))
                if not self.seen or self.seen[-1] != keys:
                    self.seen.append(keys)
            self._stop.wait(self.interval)

    def __enter__(self) -> KeyWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class BackgroundRun:
    """ansible-playbook of playbooks/rotate.yml in its own process group, with its stdout read line by
    line (`self.lines`); waited for, or killed with SIGKILL (the whole group) as soon as a condition
    holds (`kill_when`)."""

    def __init__(self, lab, consumers: dict, workdir: Path, **overrides):
        self.lab = lab
        self.lines: list[str] = []
        self.killed_at: float | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        lab.runs += 1
        vars_file = workdir / f"killed-vars-{lab.runs}.json"
        vars_file.write_text(json.dumps(lab.extra_vars(**overrides)))
        vars_file.chmod(0o600)
        cmd = [str(Path(sys.executable).parent / "ansible-playbook"), str(PLAYBOOK), "-v",
               "-i", str(lab.fleet.inventory_path), "-i", str(lab.inventory(consumers)),
               "--vault-password-file", str(lab.vault_file), "-e", f"@{vars_file}"]
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path(), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_RETRY_FILES_ENABLED="false", ANSIBLE_PYTHON_INTERPRETER=sys.executable,
                   ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
                   PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                     start_new_session=True, cwd=str(Path(PLAYBOOK).parents[1]))
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def saw_task(self, name: str, times: int = 1) -> bool:
        banner = f"TASK [rekey.aws.rotate : {name}]"
        return sum(1 for line in list(self.lines) if line.startswith(banner)) >= times

    def wait(self, timeout: float = 600) -> int:
        rc = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return rc

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def kill_when(self, until, timeout: float = 240) -> None:
        """`until(self)` is polled every 100 ms; it may look at the lines read so far or at IAM (each
        poll of IAM costs the endpoint and this process CPU that the runs beside it need)."""
        deadline = time.monotonic() + timeout
        while not until(self):
            if self.proc.poll() is not None:
                raise AssertionError(f"the run ended (rc {self.proc.returncode}) before the kill point:\n"
                                     + "\n".join(self.lines[-60:]))
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError("the kill point was not reached in time:\n" + "\n".join(self.lines[-60:]))
            time.sleep(0.1)
        self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.killed_at = time.monotonic()
        self.proc.wait(timeout=30)
        self._reader.join(timeout=10)


def locked(lab, user: str):
    """A condition: some run holds the user's lock."""
    def check(_run) -> bool:
        return LOCK_RUN_TAG in tags(lab, user)
    return check


def phase_is(lab, user: str, *phases: str):
    """A kill condition: the user's recorded phase is one of these."""
    def check(_run) -> bool:
        return tags(lab, user).get(PHASE_TAG) in phases
    return check
