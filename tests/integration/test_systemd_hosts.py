"""The rotation on systemd hosts (issue 12, item 1): two systemd-nspawn containers booting systemd
as PID 1 (tools/nspawn_fleet.py), the demo app the unit demoapp.service, so `apply: restart` and
`apply: reload` go through ansible.builtin.service and systemctl as on a real server; the prober
polls every app throughout. A unit that cannot start on the new key is rolled back; rotate_become
works through an unprivileged SSH user with sudo. What the role decides is proven on the
supervisord fleet and in unit tests; here only what systemd changes."""
from __future__ import annotations

import os
import re

import pytest
import yaml

from tests.integration.fleet_lab import fleet_lab
from tests.integration.rotate_support import PROBE_INTERVAL_S, demo_consumer, everywhere
from tools.prober import Prober

pytestmark = [
    pytest.mark.fleet,
    pytest.mark.skipif(os.geteuid() != 0, reason="the fleet needs root: network namespaces, cgroups, systemd-nspawn"),
]

START_PIN = "/var/lib/demoapp/start_pin_key_id"  # the app exits at start on another key
FAILED_TASK = "rekey.aws.rotate : Fail when the rotation did not complete"


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


def test_restart_through_systemd(clean):
    """apply: restart: systemctl restarts the unit (a new main pid) on the new key."""
    lab = clean
    user, old = lab.seed()
    before = {host: main_pid(lab, host) for host in lab.hosts}
    run, totals = rotate(lab, user, "restart", "restart")

    assert_rotated(lab, run, totals, user, old["AccessKeyId"])
    after = {host: main_pid(lab, host) for host in lab.hosts}
    assert all(after[host] not in (0, before[host]) for host in lab.hosts), (before, after)


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


def test_rotate_become_with_an_unprivileged_ssh_user(clean):
    """Logged in as the unprivileged rekeyops, rotate_become writes the root-only credentials
    directory through sudo, and the unit is restarted; not one login as root."""
    lab = clean
    user, old = lab.seed()
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
