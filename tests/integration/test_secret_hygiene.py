"""Secret hygiene (issue 4 item 4; ARCHITECTURE.md invariant 5): the rotation, run the way an
operator who wants every trace would run it, leaves no IAM secret anywhere but the secret store
(encrypted), the hosts' credentials files (0600, the app's user) and the IAM response.

Two forced rotations on a lab of 2 fleet hosts (tools/lab.py) at -vvvv with --diff, a log file,
the jsonfile fact cache (facts gathered everywhere first), retry files; the first with the
default stdout callback, the second with the minimal stdout callback (every result as JSON) and
the junit and tree callbacks. The secrets (the lab's first one and the two the rotations made)
are read out of band from a host's credentials file and proved against STS. Then every byte of
output and every file the runs wrote on the controller is searched for each secret, its halves
and their JSON- and URL-escaped forms. A finding names the file and offset, never the secret.
"""
from __future__ import annotations

import configparser
import json
import os
import pwd
import stat
import subprocess
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.ansible_run import run_playbook
from tests.support.endpoint import Endpoint
from tests.support.secret_search import (CHUNK, Needle, every_file, needles_for, redact, scan_bytes, scan_file,
                                         written_files)
from tools import lab as lab_tool
from tools.fleet import CREDENTIALS_PATH, Fleet

REPO = Path(__file__).resolve().parents[2]
USER = "hygiene-app"
APP_USER = "rekeyapp"
# Where a run could write on the controller: temp dirs, the home (~/.ansible/tmp, caches) and the
# working directory (default retry and log places). The sweep only reads, and only looks for this
# lab's secrets: labs running beside it change nothing it finds. The hosts' backup dirs (the
# role's default rotate_backup_dir, private to each host) are in the lab's directory.
SWEEP_ROOTS = (Path("/tmp"), Path("/var/tmp"), Path.home(), REPO)
SWEEP_PRUNE = {REPO / ".venv", REPO / ".venv-2.18", REPO / ".git"}

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the fleet needs root: network namespaces, mounts, sshd")


# --- the lab and the two runs -----------------------------------------------------------------

def backup_dir(fleet: Fleet, host) -> Path:
    """The role's default rotate_backup_dir of a host, as the controller sees it."""
    return fleet.rotate_dir(host) / "backups"


class BackupWatcher:
    """Polls the backup dir and the hosts' credentials dirs while a run goes on, and records every
    (mode, owner, holds any byte) seen of every file other than the credentials files themselves."""

    def __init__(self, fleet: Fleet):
        self.fleet = fleet
        self.seen: dict[str, set[tuple[int, str, bool]]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="backup-watcher", daemon=True)

    def _candidates(self) -> list[Path]:
        found = []
        for directory, keep in [(backup_dir(self.fleet, h), lambda name: True) for h in self.fleet.hosts] + [
                (self.fleet.host_dir(h) / "etc", lambda name: name != Path(CREDENTIALS_PATH).name)
                for h in self.fleet.hosts]:
            try:
                found += [p for p in directory.iterdir() if keep(p.name)]
            except OSError:  # not made yet
                pass
        return found

    def _loop(self):
        while not self._stop.is_set():
            for path in self._candidates():
                try:
                    st = path.lstat()
                except OSError:
                    continue
                try:
                    owner = pwd.getpwuid(st.st_uid).pw_name
                except KeyError:
                    owner = str(st.st_uid)
                self.seen.setdefault(str(path), set()).add((stat.S_IMODE(st.st_mode), owner, st.st_size > 0))
            self._stop.wait(0.02)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)


@dataclass
class Run:
    label: str
    rc: int
    stdout: str
    stderr: str
    results_json: str
    report: dict | None
    directory: Path


@dataclass
class Rotations:
    lab_dir: Path
    fleet: Fleet
    endpoint: Endpoint
    runs: list[Run]
    secrets: dict[str, str]  # "lab's first secret" / "new secret of run 1" / ...: the value
    key_ids: list[str]
    since: float
    backups_seen: dict[str, set[tuple[int, str, bool]]]

    @property
    def needles(self) -> list[Needle]:
        return [n for name, secret in self.secrets.items() for n in needles_for(name, secret)]


def read_profile(fleet: Fleet, host: str) -> tuple[str, str]:
    """(key id, secret) in a host's credentials file, read inside the host."""
    parser = configparser.ConfigParser()
    parser.read_string(fleet.exec(host, f"cat {CREDENTIALS_PATH}").stdout)
    return parser.get("default", "aws_access_key_id"), parser.get("default", "aws_secret_access_key")


def fleet_key(fleet: Fleet, endpoint: Endpoint) -> tuple[str, str]:
    """The one key every host holds, proved to be a real key of USER (so the search looks for
    the real secret)."""
    held = {read_profile(fleet, h.name) for h in fleet.hosts}
    assert len(held) == 1, f"the hosts hold {len(held)} different keys: {sorted(key_id for key_id, _secret in held)}"
    key_id, secret = held.pop()
    arn = endpoint.sts(key_id, secret, out_of_band=True).get_caller_identity()["Arn"]
    assert arn.endswith(f":user/{USER}"), arn
    return key_id, secret


PLAYBOOK = """\
- name: Gather facts everywhere, so that the fact cache holds something
  hosts: all:localhost
  gather_facts: true
  tasks: []

- name: Rotate
  ansible.builtin.import_playbook: rekey.aws.rotate
"""


def rotate(lab_dir: Path, label: str, *, json_callbacks: bool) -> Run:
    run_dir = lab_dir / "runs" / label
    run_dir.mkdir(parents=True)
    playbook = run_dir / "playbook.yml"
    playbook.write_text(PLAYBOOK)
    env = {
        "ANSIBLE_LOG_PATH": str(run_dir / "ansible.log"),
        "ANSIBLE_CACHE_PLUGIN": "jsonfile",
        "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(run_dir / "facts"),
        "ANSIBLE_RETRY_FILES_ENABLED": "true",
        "ANSIBLE_RETRY_FILES_SAVE_PATH": str(run_dir / "retry"),
        "ANSIBLE_KEEP_REMOTE_FILES": "0",
        "ANSIBLE_HOST_KEY_CHECKING": "false",
    }
    if json_callbacks:
        env.update({
            "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.minimal",
            "ANSIBLE_CALLBACKS_ENABLED": "record_results,ansible.builtin.junit,ansible.builtin.tree",
            "JUNIT_OUTPUT_DIR": str(run_dir / "junit"),
            "JUNIT_INCLUDE_SETUP_TASKS_IN_REPORT": "true",
            "ANSIBLE_CALLBACK_TREE_DIR": str(run_dir / "tree"),
        })
    run = run_playbook(playbook, inventory=str(lab_dir / "fleet" / "inventory.yml"), diff=True,
                       extra_vars={"rotate_force": True}, env=env,
                       args=["-i", str(lab_dir / "consumers.yml"),
                             "--vault-password-file", str(lab_dir / "vault-pass"), "-vvvv"])
    report_path = lab_dir / "report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else None
    if report_path.exists():  # the next run writes its own; keep this one to be searched too
        report_path.rename(run_dir / "report.json")
    return Run(label, run.rc, run.stdout, run.stderr, json.dumps(run.results), report, run_dir)


def explain(run: Run, needles: list[Needle]) -> str:
    failed = [line for line in run.stdout.splitlines() if "FAILED!" in line or line.startswith("fatal:")]
    text = (f"{run.label}: rc={run.rc}\nfailures:\n" + "\n".join(failed[-5:])[-4000:]
            + f"\nSTDOUT tail:\n{run.stdout[-3000:]}\nSTDERR tail:\n{run.stderr[-2000:]}")
    return redact(text, needles)


@pytest.fixture(scope="module")
def rotations(tmp_path_factory):
    deps = subprocess.run([str(REPO / "tools" / "install_system_deps.sh")], capture_output=True, text=True,
                          check=False)
    assert deps.returncode == 0, deps.stderr
    lab_dir = tmp_path_factory.mktemp("hygiene") / "lab"
    lab_tool.up(lab_dir, 2, USER)
    try:
        fleet = Fleet.load(lab_dir / "fleet")
        endpoint = Endpoint.from_state_file(lab_dir / "endpoint.json")
        first_id, first = fleet_key(fleet, endpoint)
        secrets = {"the lab's first secret": first}
        key_ids = [first_id]
        runs = []
        since = time.time() - 1  # file times have a coarse clock on some file systems
        with BackupWatcher(fleet) as watcher:
            for number, json_callbacks in ((1, False), (2, True)):
                run = rotate(lab_dir, f"run{number}", json_callbacks=json_callbacks)
                runs.append(run)
                needles = [n for name, s in secrets.items() for n in needles_for(name, s)]
                assert run.rc == 0 and run.report and run.report["ok"], explain(run, needles)
                key_id, secret = fleet_key(fleet, endpoint)
                assert key_id == run.report["users"][0]["new_key_id"] and key_id not in key_ids, \
                    f"{run.label}: hosts hold {key_id}, the report names {run.report['users'][0]['new_key_id']}"
                secrets[f"the new secret of run {number}"] = secret
                key_ids.append(key_id)
        yield Rotations(lab_dir, fleet, endpoint, runs, secrets, key_ids, since, dict(watcher.seen))
    finally:
        lab_tool.down(lab_dir)


# --- the tests --------------------------------------------------------------------------------

def test_the_search_reports_where_and_never_what(tmp_path):
    """The search itself: it finds a whole secret, a half, and escaped forms, across a chunk
    boundary, and its findings never contain the secret."""
    secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
    needles = needles_for("planted", secret)
    body = b"x" * (CHUNK - 7) + secret.encode() + b" " + secret[:20].replace("/", "\\/").encode()
    path = tmp_path / "leak.log"
    path.write_bytes(body + b" " + urllib.parse.quote(secret, safe="").encode() + b" " + secret[20:].encode())
    found = scan_file(path, needles)
    labels = [f.split(": ", 1)[1] for f in found]
    assert f"{path} @ offset {CHUNK - 7}: planted" in found
    assert f"{path} @ offset {CHUNK - 7}: planted, first half" not in found  # inside the whole one
    assert "planted, first half, JSON-escaped" in labels and "planted, URL-encoded" in labels
    assert "planted, second half" in labels
    assert all(secret[:20] not in f and secret[20:] not in f for f in found)
    assert scan_bytes("stdout", b"nothing here", needles) == []
    assert redact(f"msg {secret}", needles) == "msg <planted>"
    assert written_files([tmp_path], time.time() + 60) == set()
    assert path in written_files([tmp_path], time.time() - 60)


@pytest.mark.fleet
@needs_root
def test_no_secret_in_output_or_in_files_written_on_the_controller(rotations):
    rot = rotations
    needles = rot.needles
    assert len(rot.secrets) == 3 and len(set(rot.secrets.values())) == 3
    found = []
    for run in rot.runs:
        found += scan_bytes(f"{run.label} stdout", run.stdout.encode(), needles)
        found += scan_bytes(f"{run.label} stderr", run.stderr.encode(), needles)
        found += scan_bytes(f"{run.label} task results as callbacks see them", run.results_json.encode(), needles)
        # Each channel was really exercised: an empty log or cache would prove nothing.
        produced = {"log": run.directory / "ansible.log", "fact cache": run.directory / "facts",
                    "report": run.directory / "report.json"}
        if run.label == "run2":
            produced.update(junit=run.directory / "junit", tree=run.directory / "tree")
        for what, path in produced.items():
            assert path.exists() and (path.is_file() or any(path.iterdir())), f"{run.label} wrote no {what} ({path})"
        assert "ESTABLISH SSH CONNECTION" in run.stdout, f"{run.label}: the output is not at -vvvv"
    excluded = {rot.lab_dir / "vault-pass"} | {rot.fleet.host_dir(h) / "etc" / "credentials" for h in rot.fleet.hosts}
    files = (written_files(SWEEP_ROOTS, rot.since, SWEEP_PRUNE) | every_file(rot.lab_dir)) - excluded
    assert any(p.is_relative_to(rot.lab_dir / "store") for p in files), "the store was not searched"
    for path in sorted(files):
        found += scan_file(path, needles)
    assert found == [], f"{len(found)} secret occurrence(s) in {len(files)} files and the output:\n" + \
        "\n".join(found[:50])


@pytest.mark.fleet
@needs_root
def test_the_store_holds_only_vault_encrypted_0600_files(rotations):
    store = rotations.lab_dir / "store"
    files = sorted(every_file(store))
    assert files, f"nothing in the store {store}"
    for path in files:
        assert path.read_bytes().startswith(b"$ANSIBLE_VAULT;"), f"{path} is not an Ansible vault file"
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} has mode {mode:04o}, wider than 0600"


@pytest.mark.fleet
@needs_root
def test_hosts_keep_a_0600_app_owned_file_and_no_backup(rotations):
    rot = rotations
    for host in rot.fleet.hosts:
        mode_owner = rot.fleet.exec(host.name, f"stat -c '%a %U' {CREDENTIALS_PATH}").stdout.strip()
        assert mode_owner == f"600 {APP_USER}", f"{host.name}: {CREDENTIALS_PATH} is {mode_owner}"
        beside = rot.fleet.exec(host.name, f"ls -A {Path(CREDENTIALS_PATH).parent}").stdout.split()
        assert beside == [Path(CREDENTIALS_PATH).name], f"{host.name}: left next to the credentials: {beside}"
    left = sorted(str(p) for h in rot.fleet.hosts if backup_dir(rot.fleet, h).is_dir()
                  for p in backup_dir(rot.fleet, h).iterdir())
    assert left == [], f"backups left: {left}"
    # While they existed, the backups were private to the app's user: 0600 always, and the app's
    # own as soon as they held a byte (a temporary file is made 0600 by root, then given to the
    # app's user before anything is written: seen empty in between, it held nothing).
    assert rot.backups_seen, "no backup of this lab's hosts was seen in their backup dirs during the runs"
    wide = {path: sorted(f"{mode:04o} {owner}{'' if full else ' (empty)'}" for mode, owner, full in seen
                         if mode != 0o600 or (owner != APP_USER and full))
            for path, seen in rot.backups_seen.items()}
    wide = {path: found for path, found in wide.items() if found}
    assert wide == {}, f"backups or temporary files not 0600 {APP_USER}: {wide}"
