"""The rotation on systemd hosts (issue 12, item 1): two systemd-nspawn containers booting systemd
as PID 1 (tools/nspawn_fleet.py), the demo app the unit demoapp.service, so `apply: restart` and
`apply: reload` go through ansible.builtin.service and systemctl as on a real server; the prober
polls every app throughout. A unit that cannot start on the new key is rolled back; rotate_become
works through an unprivileged SSH user with sudo. What the role decides is proven on the
supervisord fleet and in unit tests; here only what systemd changes."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.integration.fleet_lab import fleet_lab
from tests.integration.rotate_support import PROBE_INTERVAL_S, demo_consumer, everywhere
from tools.fleet import make_fleet
from tools.nspawn_fleet import CGROUP_PARENT, CGROUP_ROOTS
from tools.prober import Prober

pytestmark = [
    pytest.mark.fleet,
    pytest.mark.skipif(os.geteuid() != 0, reason="the fleet needs root: network namespaces, cgroups, systemd-nspawn"),
]

START_PIN = "/var/lib/demoapp/start_pin_key_id"  # the app exits at start on another key
FAILED_TASK = "rekey.aws.rotate : Fail when the rotation did not complete"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with fleet_lab(tmp_path_factory.mktemp("systemd"), 2, kind="systemd") as made:
        yield made


@pytest.fixture
def clean(lab):
    for host in lab.hosts:
        lab.fleet.exec(host, f"rm -f {START_PIN}")
    yield lab
    for host in lab.hosts:
        lab.fleet.exec(host, f"rm -f {START_PIN}; systemctl is-active --quiet demoapp || systemctl restart demoapp")


def systemd_consumer(user: str, apply: str) -> dict:
    """The demo app applied through its unit instead of supervisorctl."""
    return demo_consumer(user, apply=apply, service="{{ fleet_app_service }}", apply_command="")


def main_pid(lab, host: str) -> int:
    return int(lab.fleet.exec(host, "systemctl show --property MainPID --value demoapp").stdout)


def rotate(lab, user: str, apply: str, name: str, **overrides):
    """The rotation with the prober on: (run, prober totals)."""
    prober = Prober(lab.fleet.app_urls, timeline=lab.dir / f"{name}-timeline.jsonl", interval=PROBE_INTERVAL_S).start()
    try:
        run = lab.run(everywhere(lab, systemd_consumer(user, apply)), rotate_force=True, **overrides)
    finally:
        totals = prober.stop()
    return run, totals


def explain(run) -> str:
    return f"rc={run.rc}\nSTDOUT:\n{run.stdout[-8000:]}\nSTDERR:\n{run.stderr[-3000:]}"


def assert_rotated(lab, run, totals, user: str, old_id: str) -> str:
    assert run.rc == 0, explain(run)
    [entry] = run.report["users"]
    assert entry["result"] == "rotated" and entry["old_key_id"] == old_id, entry
    new_id = entry["new_key_id"]
    assert lab.keys(user) == {new_id: "Active"}
    assert {host: lab.app_key_id(host) for host in lab.hosts} == {host: new_id for host in lab.hosts}
    assert {host: lab.file_key_id(host) for host in lab.hosts} == {host: new_id for host in lab.hosts}
    assert totals["overall"]["auth_failures"] == 0, totals
    return new_id


def test_reload_through_systemd_without_a_gap(clean):
    """apply: reload: ExecReload sends SIGHUP, the same process reads the new key and never stops
    answering."""
    lab = clean
    user, old = lab.seed()
    before = {host: main_pid(lab, host) for host in lab.hosts}
    run, totals = rotate(lab, user, "reload", "reload")

    assert_rotated(lab, run, totals, user, old["AccessKeyId"])
    assert {host: main_pid(lab, host) for host in lab.hosts} == before
    assert totals["overall"]["gaps"] == 0 and totals["overall"]["ok"] > 0, totals


def test_unit_that_fails_to_start_is_rolled_back(clean):
    """The unit on host 2 cannot start on the new key (Type=notify: systemctl restart fails):
    both hosts get their old file back and the unit restarted on the old key; the failure names
    the host and the unit."""
    lab = clean
    user, old = lab.seed()
    canary, broken = lab.hosts
    lab.fleet.exec(broken, f"echo {old['AccessKeyId']} > {START_PIN}")
    run, totals = rotate(lab, user, "restart", "fails")

    assert run.rc != 0, explain(run)
    [entry] = run.report["users"]
    assert entry["result"] == "rolled_back", f"{entry}\n{explain(run)}"
    assert entry["hosts_rolled_back"] == [canary, broken], entry
    assert entry["old_key_final_state"] == "Active" and entry["new_key_final_state"] == "deleted", entry
    failure = run.task(FAILED_TASK)["result"]["msg"]
    assert f"{broken}: demoapp" in failure and "demoapp.service failed" in failure, failure
    [failed] = entry["hosts_failed"]  # the report names the host, the consumer and systemd's error
    assert failed["host"] == broken and failed["status"] == "rolled_back", failed
    assert failed["error"].startswith(f"{broken}: demoapp: Job for demoapp.service failed"), failed
    assert lab.keys(user) == {old["AccessKeyId"]: "Active"}
    assert {host: lab.app_key_id(host) for host in lab.hosts} == {host: old["AccessKeyId"] for host in lab.hosts}
    for host in lab.hosts:
        assert lab.fleet.exec(host, "systemctl is-active demoapp").stdout.strip() == "active"
    assert totals["overall"]["auth_failures"] == 0, totals


def ssh_logins(lab, host: str) -> dict[str, int]:
    """Accepted SSH logins so far per user, from the host's journal."""
    log = lab.fleet.exec(host, "journalctl --unit ssh.service --no-pager --output cat").stdout
    found = re.findall(r"Accepted publickey for (\S+)", log)
    return {user: found.count(user) for user in ("root", "rekeyops")}


def test_restart_through_systemd_as_an_unprivileged_ssh_user(clean):
    """apply: restart with rotate_become, logged in as the unprivileged rekeyops: the root-only
    credentials directory is written through sudo and systemctl restarts the unit (a new main
    pid) on the new key; not one login as root."""
    lab = clean
    user, old = lab.seed()
    pids_before = {host: main_pid(lab, host) for host in lab.hosts}
    as_ops = lab.dir / "as-rekeyops.yml"
    as_ops.write_text(yaml.safe_dump({"all": {"hosts": {
        host: {"ansible_user": "{{ fleet_unprivileged_user }}"} for host in lab.hosts}}}))
    assert lab.fleet.exec(lab.hosts[0], "stat -c '%a %U' /etc/demoapp").stdout.split() == ["700", "rekeyapp"]
    before = {host: ssh_logins(lab, host) for host in lab.hosts}
    run, totals = rotate(lab, user, "restart", "become", args=["-i", str(as_ops)], rotate_become=True)

    assert_rotated(lab, run, totals, user, old["AccessKeyId"])
    for host in lab.hosts:
        logins = ssh_logins(lab, host)
        assert logins["root"] == before[host]["root"], (host, before[host], logins)
        assert logins["rekeyops"] > before[host]["rekeyops"], (host, before[host], logins)
        assert lab.stat(host, "/etc/demoapp/credentials") == "600 rekeyapp"
    pids_after = {host: main_pid(lab, host) for host in lab.hosts}
    assert all(pids_after[host] not in (0, pids_before[host]) for host in lab.hosts), (pids_before, pids_after)


# --- the harness: teardown ------------------------------------------------------------------

def leftovers(prefix: str) -> list[str]:
    """Namespaces, links and cgroups of fleets with this prefix that still exist."""
    found = [f"netns {n}" for n in os.listdir("/run/netns") if n.startswith(f"{prefix}-")]
    found += [f"link {n}" for n in os.listdir("/sys/class/net") if n.startswith(prefix)]
    for root in CGROUP_ROOTS:
        parent = root / CGROUP_PARENT
        found += [f"cgroup {p}" for p in parent.glob(f"{prefix}-*")] if parent.is_dir() else []
    propagate = Path("/run/systemd/nspawn/propagate")
    found += [f"nspawn dir {p}" for p in propagate.glob(f"{prefix}-*")] if propagate.is_dir() else []
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_down_stops_each_container_in_order(lab, tmp_path):
    """SIGTERM to nspawn: systemd inside halts in order; nothing of the fleet is left, and the
    module's lab beside it runs on."""
    fleet = make_fleet(tmp_path / "fleet", kind="systemd", prefix="auto", subnet="auto")
    fleet.up(1, endpoint_url=f"http://{fleet.bridge_address}:9",
             credentials={"access_key_id": "AKIASYSTEMDDOWNTEST0", "secret_access_key": "x"})
    nspawn = fleet.hosts[0].sshd_pid
    leader = fleet.leader(1)
    begun = time.monotonic()
    removed = fleet.down()
    print(f"systemd fleet down 1 host in {time.monotonic() - begun:.2f}s")
    assert not any(r.startswith("killed") for r in removed), removed  # none needed SIGKILL
    assert "Halting system." in (fleet.host_dir(1) / "sshd.log").read_text()
    assert leftovers(fleet.prefix) == [] and not alive(nspawn) and not alive(leader)
    assert fleet.down() == []  # idempotent
    assert all(lab.app_key_id(host) for host in lab.hosts)


def test_down_stale_removes_a_dead_owners_containers_by_name(lab, tmp_path):
    """The fleet's owner died and its record is gone: fleet.py down --stale PREFIX finds the
    containers by name (netns, cgroups) and leaves nothing, nor touches the module's lab."""
    fleet = make_fleet(tmp_path / "fleet", kind="systemd", prefix="auto", subnet="auto")
    fleet.up(1, endpoint_url=f"http://{fleet.bridge_address}:9",
             credentials={"access_key_id": "AKIASYSTEMDSTALETEST", "secret_access_key": "x"})
    nspawn, leader = fleet.hosts[0].sshd_pid, fleet.leader(1)
    (fleet.dir / "fleet.json").unlink()
    os.kill(nspawn, signal.SIGKILL)
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "fleet.py"), "down", "--stale", fleet.prefix],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert leftovers(fleet.prefix) == [] and not alive(leader), proc.stdout
    assert all(lab.app_key_id(host) for host in lab.hosts)


def test_up_interrupted_half_way_leaves_nothing(lab, tmp_path):
    """Ctrl-C while the containers boot: everything the command started is gone, nothing else."""
    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps({"access_key_id": "AKIASYSTEMDINTERRUPT", "secret_access_key": "x"}))
    directory = tmp_path / "fleet"
    proc = subprocess.Popen([sys.executable, str(REPO / "tools" / "fleet.py"), "up", "2", "--kind", "systemd",
                             "--dir", str(directory), "--prefix", "auto", "--subnet", "auto",
                             "--endpoint-url", "http://192.0.2.1:9", "--initial-credentials", str(creds)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    hosts = []
    try:
        while not hosts and time.monotonic() < deadline:
            try:
                recorded = json.loads((directory / "fleet.json").read_text())["hosts"]
            except (OSError, ValueError):
                recorded = []
            hosts = recorded if recorded and all(h["sshd_pid"] for h in recorded) else []
            time.sleep(0.02)
        assert hosts, "fleet.py up did not start the containers within 30 s"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out + err
    state = json.loads((directory / "fleet.json").read_text())
    assert state["kind"] == "systemd" and state["state"] == "down"
    assert leftovers(state["prefix"]) == []
    assert not any(alive(h["sshd_pid"]) for h in hosts)
    assert all(lab.app_key_id(host) for host in lab.hosts)
