"""The rotation as AWX runs it (issue 11, items 2 and 7): the collection built into its tarball and
installed into a clean collections path (tools/check_tarball.sh --install-to), then jobs run by
ansible-runner, AWX's engine, on a private_data_dir laid out as AWX lays it out:

    inventory/      the fleet's hosts and their rotate_consumers
    project/        a playbook that imports rekey.aws.rotate
    env/envvars     AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY as AWX's AWS credential injects them,
                    AWS_ENDPOINT_URL and AWS_REGION for the test endpoint, the collections path
    env/extravars   the job's extra variables
    env/cmdline     --ask-vault-pass, and env/passwords answering its prompt, as AWX's vault
                    credential does (the prompt -> answer map that ansible-runner feeds to pexpect)
    env/settings    bounded job and idle timeouts

HOME is the private_data_dir, as in an execution environment (/runner), so ~/.ansible lands there.
One job rotates a user on a lab of 2 hosts: the runner's status and rc, set_stats in the
playbook_on_stats event of artifacts/<ident>/job_events, the rotation out of band (old key gone,
every app on the new key), and no secret (the old and the new secret access key, the vault
password) in any file the job left in the private_data_dir, the store and the report, or in the
runner's output. A second job with a Limit that leaves out localhost fails, saying so, and makes
no IAM write.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.integration.fleet_lab import fleet_lab
from tests.integration.rotate_support import demo_consumer, everywhere
from tests.support.secret_search import every_file, needles_for, scan_bytes, scan_file

pytestmark = [
    pytest.mark.fleet,
    pytest.mark.skipif(os.geteuid() != 0, reason="the fleet needs root: network namespaces, mounts, sshd"),
]

REPO = Path(__file__).resolve().parents[2]
VENV = Path(sys.executable).parent.parent
HOSTS = 2
# The pattern AWX's vault credential answers; ansible-core keeps its --ask-vault-pass prompt
# matching it (ansible/cli/__init__.py).
VAULT_PROMPT = r"Vault password:\s*?$"
PLAYBOOK = """\
- name: Rotate the fleet's keys
  ansible.builtin.import_playbook: rekey.aws.rotate
"""
# Inputs that hold a secret on purpose (AWX writes them too): not searched.
INPUTS = ("env/passwords", "env/envvars")


@dataclass
class Job:
    private_data_dir: Path
    ident: str
    proc: subprocess.CompletedProcess

    @property
    def artifacts(self) -> Path:
        return self.private_data_dir / "artifacts" / self.ident

    def artifact(self, name: str) -> str:
        return (self.artifacts / name).read_text().strip()

    def events(self) -> list[dict]:
        paths = sorted((self.artifacts / "job_events").glob("*.json"), key=lambda p: int(p.name.split("-", 1)[0]))
        return [json.loads(p.read_text()) for p in paths]

    def stdout(self) -> str:
        return (self.artifacts / "stdout").read_text()

    def explain(self) -> str:
        return (f"ansible-runner exited {self.proc.returncode}\nstdout (tail):\n{self.stdout()[-6000:]}\n"
                f"runner stderr:\n{self.proc.stderr[-2000:]}")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The collections path holding rekey.aws as installed from its tarball, and nothing else."""
    work = tmp_path_factory.mktemp("tarball")
    proc = subprocess.run([str(REPO / "tools" / "check_tarball.sh"), "--install-to", str(work / "collections"),
                           str(work / "check")], capture_output=True, text=True, check=False,
                          env={**os.environ, "VENV": str(VENV)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (work / "collections" / "ansible_collections" / "rekey" / "aws" / "MANIFEST.json").is_file()
    return work / "collections"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with fleet_lab(tmp_path_factory.mktemp("awx-runner"), HOSTS) as made:
        yield made


def private_data_dir(root: Path, lab, installed: Path, consumers: dict, extravars: dict, vault_password: str) -> Path:
    """A private_data_dir as AWX writes one for a job."""
    pdd = root / "pdd"
    for sub in ("inventory", "project", "env"):
        (pdd / sub).mkdir(parents=True)
    (pdd / "inventory" / "fleet.yml").write_text(lab.fleet.inventory_path.read_text())
    (pdd / "inventory" / "consumers.yml").write_text(yaml.safe_dump(
        {"all": {"hosts": {host: {"rotate_consumers": items} for host, items in consumers.items()}}}))
    (pdd / "project" / "rotate.yml").write_text(PLAYBOOK)
    env = {
        "envvars": {
            "AWS_ACCESS_KEY_ID": lab.ep.access_key_id,
            "AWS_SECRET_ACCESS_KEY": lab.ep.secret_access_key,
            "AWS_ENDPOINT_URL": lab.ep.endpoint_url,
            "AWS_REGION": lab.ep.region,
            "ANSIBLE_COLLECTIONS_PATH": str(installed),
            "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false",
        },
        "extravars": extravars,
        "passwords": {VAULT_PROMPT: vault_password},
        "settings": {"job_timeout": 600, "idle_timeout": 300, "pexpect_timeout": 5},
    }
    for name, data in env.items():
        path = pdd / "env" / name
        path.write_text(json.dumps(data))
        path.chmod(0o600)
    (pdd / "env" / "cmdline").write_text("--ask-vault-pass")
    return pdd


def run_job(pdd: Path, ident: str, *, limit: str | None = None) -> Job:
    """ansible-runner run, with only what an execution environment would have in its environment."""
    cmd = [str(VENV / "bin" / "ansible-runner"), "run", str(pdd), "-p", "rotate.yml", "--ident", ident]
    if limit:
        cmd += ["--limit", limit]
    env = {"PATH": f"{VENV / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(pdd), "LC_ALL": "C.UTF-8"}
    (pdd / "tmp").mkdir(mode=0o700, exist_ok=True)
    # The job's TMPDIR through a short link: ansible-core's RPC server listens on a Unix socket
    # under it, and a socket path longer than 107 bytes (a pytest worker's tmp_path) cannot be
    # bound ("Local RPC server did not start"). What the job writes there stays under pdd.
    link = Path(tempfile.mkdtemp(prefix="rkawx-")) / "t"
    link.symlink_to(pdd / "tmp")
    env["TMPDIR"] = str(link)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(pdd), timeout=900, check=False)
    finally:
        shutil.rmtree(link.parent)
    return Job(pdd, ident, proc)


def job_vars(user: str, persistent: Path, **overrides) -> dict:
    """The job's extra variables. The store and the report sit outside the private_data_dir (as on a
    volume that outlives the job), set on purpose: AWX's job variables are there, so the vault file
    store is refused without rotate_store_dir_outlives_job."""
    values = {
        "awx_job_id": 4242,
        "tower_job_id": 4242,
        "rotate_store_dir_outlives_job": True,
        "rotate_users": user,  # as a survey's text field sends it
        "rotate_force": True,
        "rotate_store_dir": str(persistent / "store"),
        "rotate_report_path": str(persistent / "reports" / "rotate-{run_id}.json"),
        "rotate_idle_window_s": 0,
        "rotate_deactivate_settle_s": 0,
        "rotate_verify_timeout_s": 60,
    }
    values.update(overrides)
    return values


def stats_event(job: Job) -> dict:
    [event] = [e for e in job.events() if e.get("event") == "playbook_on_stats"]
    return event["event_data"]


@dataclass
class Rotation:
    job: Job
    user: str
    old: dict
    persistent: Path
    vault_password: str


@pytest.fixture(scope="module")
def rotation(lab, installed, tmp_path_factory) -> Rotation:
    root = tmp_path_factory.mktemp("awx-job")
    persistent = root / "volume"
    user, old = lab.seed(prefix="awx")
    vault_password = "awx-vault-" + secrets.token_urlsafe(18)
    pdd = private_data_dir(root, lab, installed, everywhere(lab, demo_consumer(user)),
                           job_vars(user, persistent), vault_password)
    started = time.monotonic()
    job = run_job(pdd, "rotate-1")
    print(f"the rotation job on {HOSTS} hosts took {time.monotonic() - started:.1f} s")
    return Rotation(job, user, old, persistent, vault_password)


def test_the_job_is_successful_and_publishes_its_stats(installed, rotation):
    job = rotation.job
    assert job.proc.returncode == 0, job.explain()
    assert job.artifact("status") == "successful" and job.artifact("rc") == "0", job.explain()
    # ansible-runner answered the vault prompt from env/passwords (no other vault secret was given).
    assert "--ask-vault-pass" in json.loads(job.artifact("command"))["command"]
    assert re.search(VAULT_PROMPT, job.stdout(), re.M), "no vault prompt was answered:\n" + job.explain()
    # Every task ran from the collection installed from the tarball, none from the checkout.
    task_paths = {e["event_data"]["task_path"].rsplit(":", 1)[0] for e in job.events()
                  if e.get("event_data", {}).get("task_path")}
    collection = installed / "ansible_collections" / "rekey" / "aws"
    assert task_paths and all(Path(p).is_relative_to(collection) for p in task_paths), sorted(task_paths)
    data = stats_event(job)
    assert data["failures"] == {} and data["dark"] == {}, data
    stats = data["artifact_data"]["rekey_rotate"]
    entry = stats["users"][rotation.user]
    assert stats["ok"] is True and entry["result"] == "rotated"
    assert entry["old_key_id"] == rotation.old["AccessKeyId"] and entry["new_key_id"] != entry["old_key_id"]
    report = Path(stats["report"])
    assert report.parent == rotation.persistent / "reports", report
    assert json.loads(report.read_text())["run_id"] == stats["run_id"]


def test_the_rotation_happened(lab, rotation):
    entry = stats_event(rotation.job)["artifact_data"]["rekey_rotate"]["users"][rotation.user]
    new_id = entry["new_key_id"]
    assert lab.keys(rotation.user) == {new_id: "Active"}, "the old key is not gone, or a third key exists"
    for host in lab.hosts:
        assert lab.file_key_id(host) == new_id, host
        assert lab.app_key_id(host) == new_id, f"{host}: the app does not run on the new key"


def test_no_secret_in_the_artifacts_or_any_other_output(lab, rotation):
    job = rotation.job
    host = lab.hosts[0]
    new_secret = lab.read(host, "/etc/demoapp/credentials").split("aws_secret_access_key = ", 1)[1].split()[0]
    secrets_ = {"the old secret": rotation.old["SecretAccessKey"], "the new secret": new_secret,
                "the vault password": rotation.vault_password}
    assert len(set(secrets_.values())) == 3
    needles = [n for name, value in secrets_.items() for n in needles_for(name, value)]
    pdd = job.private_data_dir
    inputs = {pdd / name for name in INPUTS}
    files = (every_file(pdd) | every_file(rotation.persistent)) - inputs
    # Each output was really there: an empty search would prove nothing.
    for produced in ("stdout", "command", "status", "rc"):
        assert job.artifacts / produced in files, f"ansible-runner wrote no artifacts/{job.ident}/{produced}"
    assert len([p for p in files if p.parent.name == "job_events"]) > 20
    assert any(p.is_relative_to(rotation.persistent / "store") for p in files), "the store was not searched"
    assert (pdd / ".ansible" / "tmp").is_dir(), "Ansible's local temp was not under the private_data_dir (HOME)"
    found = scan_bytes("ansible-runner's stdout", job.proc.stdout.encode(), needles)
    found += scan_bytes("ansible-runner's stderr", job.proc.stderr.encode(), needles)
    for path in sorted(files):
        found += scan_file(path, needles)
    assert found == [], f"{len(found)} secret occurrence(s) in {len(files)} files:\n" + "\n".join(found[:50])


def test_a_limit_that_leaves_out_localhost_fails_the_job(lab, installed, tmp_path):
    """A job template's Limit of one app host: the job fails and says why, and nothing is written."""
    user = lab.ep.new_user("awx-limit")
    lab.ep.iam().create_access_key(UserName=user)
    keys_before = lab.keys(user)
    lab.ep.reset_counts()
    pdd = private_data_dir(tmp_path, lab, installed, everywhere(lab, demo_consumer(user)),
                           job_vars(user, tmp_path / "volume"), "awx-vault-" + secrets.token_urlsafe(18))
    job = run_job(pdd, "limited", limit=lab.hosts[0])
    assert job.proc.returncode != 0, job.explain()
    assert job.artifact("status") == "failed" and job.artifact("rc") != "0", job.explain()
    stdout = " ".join(job.stdout().split())
    assert f"--limit {lab.hosts[0]} leaves out localhost" in stdout and "Nothing was changed" in stdout, job.explain()
    data = stats_event(job)
    assert data["failures"] == {lab.hosts[0]: 1}, data
    assert "rekey_rotate" not in data["artifact_data"], "a job that did nothing published an outcome"
    assert lab.ep.write_counts() == {} and lab.keys(user) == keys_before
    assert not (tmp_path / "volume").exists(), "the refused job wrote a report or a store"
