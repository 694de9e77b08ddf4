"""The test fleet (tools/fleet.py), the demo app and the prober, for real: namespaces, sshd,
supervisord, and the strict endpoint on the fleet's bridge."""
from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.ansible_run import run_playbook
from tests.support.endpoint import read_log, start_endpoint, stop_endpoint
from tools.fleet import CREDENTIALS_PATH, PIN_PATH, SUPERVISOR_CONF, Fleet, FleetError, down_stale
from tools.prober import Prober

pytestmark = [
    pytest.mark.fleet,
    pytest.mark.skipif(os.geteuid() != 0, reason="the fleet needs root: network namespaces, mounts, sshd"),
]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# Every fleet here takes an unused prefix and a free subnet ("auto"): a demo or other tests'
# fleets may run on this machine meanwhile.


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def health(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def leftovers(prefix: str) -> list[str]:
    """Namespaces, links and processes of fleets with this prefix that still exist."""
    found = [f"netns {n}" for n in os.listdir("/run/netns")
             if n.startswith(f"{prefix}-")] if os.path.isdir("/run/netns") else []
    found += [f"link {n}" for n in os.listdir("/sys/class/net") if n.startswith(prefix)]
    return found


def cmdline(pid) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:  # gone meanwhile
        return ""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def system_deps():
    proc = subprocess.run([str(REPO / "tools" / "install_system_deps.sh")], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def fleet_env(tmp_path_factory, system_deps):
    """Three hosts whose apps hold a real key of a fresh user, against an endpoint on the bridge."""
    directory = tmp_path_factory.mktemp("fleet")
    fleet = Fleet(directory, prefix="auto", subnet="auto")
    proc = None
    try:
        address = fleet.bridge_up()
        proc, ep = start_endpoint(address, 0, directory / "endpoint.json")
        user = ep.new_user("fleet")
        key = ep.iam().create_access_key(UserName=user)["AccessKey"]
        started = time.monotonic()
        fleet.up(3, endpoint_url=ep.endpoint_url, region=ep.region,
                 credentials={"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]})
        print(f"fleet up 3 hosts in {time.monotonic() - started:.2f}s: {fleet.timings}")
        yield fleet, ep, user, key
    finally:
        try:
            fleet.down()
        finally:
            if proc is not None:
                rc = stop_endpoint(proc)
                assert rc in (0, -signal.SIGTERM), f"endpoint exited {rc}:\n{read_log(proc)}"


def test_up_writes_inventory_and_state(fleet_env):
    fleet, ep, user, key = fleet_env
    import yaml
    inventory = yaml.safe_load(fleet.inventory_path.read_text())
    app = inventory["all"]["children"]["app"]
    names = [f"{fleet.prefix}-host0{i}" for i in (1, 2, 3)]
    assert sorted(app["hosts"]) == names
    host = app["hosts"][names[1]]
    assert host["ansible_host"] == str(ipaddress.ip_network(fleet.subnet)[12])
    assert host["ansible_user"] == "root"
    assert host["ansible_python_interpreter"] == "/usr/bin/python3"
    assert f"ControlPath={fleet.control_dir}/%C" in host["ansible_ssh_common_args"]
    assert app["vars"]["fleet_supervisorctl"] == f"supervisorctl -c {SUPERVISOR_CONF}"
    assert app["vars"]["fleet_credentials_path"] == CREDENTIALS_PATH
    assert app["vars"]["fleet_app_user"] == "rekeyapp"
    state = json.loads(fleet.state_file.read_text())
    assert state["state"] == "up"
    assert all(alive(h["sshd_pid"]) and alive(h["supervisord_pid"]) for h in state["hosts"])
    assert key["SecretAccessKey"] not in fleet.state_file.read_text()
    assert key["SecretAccessKey"] not in fleet.inventory_path.read_text()


def test_ssh_lands_in_the_hosts_namespaces(fleet_env):
    fleet, ep, user, key = fleet_env
    for host in fleet.hosts:
        proc = subprocess.run(fleet.ssh_command(host) + [
            f"hostname; ip -4 -o addr show eth0; stat -c '%U %a' {CREDENTIALS_PATH}"],
            capture_output=True, text=True, timeout=30, check=False)
        assert proc.returncode == 0, proc.stderr
        name, addr, owner = proc.stdout.splitlines()
        assert name == host.name
        assert f"inet {host.address}/24" in addr
        assert owner == "rekeyapp 600"


def test_each_host_sees_its_own_copy_of_the_app_paths(fleet_env):
    fleet, ep, user, key = fleet_env
    fleet.exec(1, "echo one > /var/lib/demoapp/marker")
    fleet.exec(2, "echo two > /var/lib/demoapp/marker")
    assert fleet.exec(1, "cat /var/lib/demoapp/marker").stdout == "one\n"
    assert fleet.exec(2, "cat /var/lib/demoapp/marker").stdout == "two\n"
    assert fleet.exec(3, "test -e /var/lib/demoapp/marker", check=False).returncode == 1
    assert not Path("/var/lib/demoapp/marker").exists()  # the root namespace sees none of them
    assert (fleet.host_dir(2) / "var" / "marker").read_text() == "two\n"
    # The rotate role's backup dir too: another host, or another lab, never sees a host's backups.
    fleet.exec(1, "mkdir -p /var/lib/rekey-aws/backups && echo one > /var/lib/rekey-aws/backups/b")
    assert fleet.exec(2, "test -e /var/lib/rekey-aws/backups/b", check=False).returncode == 1
    assert not Path("/var/lib/rekey-aws/backups/b").exists()
    assert (fleet.rotate_dir(1) / "backups" / "b").read_text() == "one\n"


def test_control_socket_paths_fit_whatever_the_fleet_directory(tmp_path):
    """ssh makes CONTROL_DIR/%C (40 hex) plus a 17-character temporary suffix; a unix socket path
    holds 107 bytes. pytest's temp directory grows with its run counter and the machine's history."""
    deep = tmp_path / ("d" * 120) / "pytest-of-root" / "pytest-123456" / "hygiene0" / "lab" / "fleet"
    for directory in (Path("/f"), tmp_path, deep):
        control = Fleet(directory, prefix="rk", subnet="10.231.0.0/24").control_dir
        assert len(f"{control}/{'0' * 40}.{'x' * 16}") <= 107, control
    assert Fleet(tmp_path / "a").control_dir != Fleet(tmp_path / "b").control_dir


def test_ansible_reaches_every_host_and_the_group_vars_drive_supervisor(fleet_env):
    fleet, ep, user, key = fleet_env
    ping = subprocess.run([str(BIN / "ansible"), "-i", str(fleet.inventory_path), "app", "-m",
                           "ansible.builtin.ping"], capture_output=True, text=True, timeout=120, check=False)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert ping.stdout.count("SUCCESS") == 3
    run = run_playbook([{"name": "status", "hosts": "app", "gather_facts": False, "tasks": [
        {"name": "app status", "ansible.builtin.command": "{{ fleet_supervisorctl }} status {{ fleet_app_program }}",
         "changed_when": False},
        {"name": "credentials", "ansible.builtin.stat": {"path": "{{ fleet_credentials_path }}"}}]}],
        inventory=str(fleet.inventory_path))
    assert run.rc == 0, run.stdout + run.stderr
    for host in fleet.hosts:
        assert "RUNNING" in run.task("app status", host.name)["result"]["stdout"]
        stat = run.task("credentials", host.name)["result"]["stat"]
        assert (stat["pw_name"], stat["mode"]) == ("rekeyapp", "0600")


def test_app_reports_the_key_in_use(fleet_env):
    fleet, ep, user, key = fleet_env
    for host in fleet.hosts:
        status, body = health(fleet.app_url(host))
        assert status == 200, body
        assert body["access_key_id"] == key["AccessKeyId"]
        assert body["arn"].endswith(f":user/{user}")


def test_refused_key_is_an_auth_failure_and_each_probe_one_sts_call(fleet_env):
    fleet, ep, user, key = fleet_env
    iam = ep.iam()
    ep.reset_counts()
    prober = Prober(fleet.app_urls).start()
    try:
        wait_for(lambda: prober.totals()["overall"]["ok"] >= 6, 10, "probes answered 200")
        iam.update_access_key(UserName=user, AccessKeyId=key["AccessKeyId"], Status="Inactive")
        wait_for(lambda: all(h["auth_failures"] >= 2 for h in prober.totals()["hosts"].values()), 10,
                 "every host to report auth failures")
        iam.update_access_key(UserName=user, AccessKeyId=key["AccessKeyId"], Status="Active")
        marks = {name: h["ok"] for name, h in prober.totals()["hosts"].items()}
        wait_for(lambda: all(h["ok"] >= marks[n] + 2 for n, h in prober.totals()["hosts"].items()), 10,
                 "every host to answer 200 again")
    finally:
        totals = prober.stop()
    overall = totals["overall"]
    assert overall["gaps"] == 0 and overall["errors"] == 0, totals
    assert overall["hosts_with_auth_failures"] == [h.name for h in fleet.hosts]
    for host in totals["hosts"].values():
        assert set(host["auth_failure_codes"]) == {"InvalidClientTokenId"}, host
        assert host["key_ids"] == [key["AccessKeyId"]]
    # No retries in the app: every probe made exactly one STS call, refused or not.
    calls = ep.counts().get("sts:GetCallerIdentity", 0)
    assert calls == overall["ok"] + overall["auth_failures"], (calls, overall)


def test_prober_command_line_writes_timeline_and_totals(fleet_env, tmp_path):
    fleet, ep, user, key = fleet_env
    timeline, totals_file = tmp_path / "timeline.jsonl", tmp_path / "totals.json"
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "prober.py"), "--fleet", str(fleet.dir),
                           "--max-seconds", "1", "--timeline", str(timeline), "--totals", str(totals_file),
                           "--fail-on-auth-failure"], capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    totals = json.loads(totals_file.read_text())
    assert totals == json.loads(proc.stdout)
    assert sorted(totals["hosts"]) == [h.name for h in fleet.hosts]
    events = [json.loads(line) for line in timeline.read_text().splitlines()]
    assert len(events) == totals["overall"]["probes"] >= 3 * 5
    assert {e["outcome"] for e in events} == {"ok"}
    assert {e["key_id"] for e in events} == {key["AccessKeyId"]}


def test_endpoint_trouble_is_an_error_not_an_auth_failure_and_never_retried(fleet_env):
    fleet, ep, user, key = fleet_env
    host = fleet.hosts[0]
    ep.reset_counts()
    ep.set_faults(throttle_rate=1.0)
    try:
        with Prober({host.name: fleet.app_url(host)}) as prober:
            wait_for(lambda: prober.totals()["overall"]["errors"] >= 5, 10, "throttled probes")
    finally:
        ep.clear_faults()
    totals = prober.stop()
    overall = totals["overall"]
    assert overall["auth_failures"] == 0 and overall["gaps"] == 0, totals
    assert totals["hosts"][host.name]["error_codes"] == {"Throttling": overall["errors"]}, totals
    # One attempt per health check: a retrying app would hide throttling and multiply the calls.
    assert ep.counts().get("sts:GetCallerIdentity", 0) == overall["probes"], (ep.counts(), overall)


def test_restart_is_a_gap_not_an_auth_failure(fleet_env):
    fleet, ep, user, key = fleet_env
    host = fleet.hosts[0]
    pid_before = health(fleet.app_url(host))[1]["pid"]
    with Prober({host.name: fleet.app_url(host)}) as prober:
        wait_for(lambda: prober.totals()["overall"]["ok"] >= 3, 10, "probes answered 200")
        fleet.exec(host, f"supervisorctl -c {SUPERVISOR_CONF} restart demoapp")
        mark = prober.totals()["overall"]["ok"]
        wait_for(lambda: prober.totals()["overall"]["ok"] >= mark + 3, 10, "the app to answer again")
    totals = prober.stop()["overall"]
    assert totals["auth_failures"] == 0 and totals["errors"] == 0, totals
    assert totals["gap_periods"] == 1 and totals["gaps"] >= 1, totals
    assert 0 < totals["longest_gap_s"] < 5, totals
    assert health(fleet.app_url(host))[1]["pid"] != pid_before


def test_credentials_are_read_once_and_reloaded_on_sighup(fleet_env):
    fleet, ep, user, key = fleet_env
    host = fleet.hosts[1]
    new = ep.iam().create_access_key(UserName=user)["AccessKey"]
    path = CREDENTIALS_PATH
    original = fleet.exec(host, f"cat {path}").stdout
    hup = f"supervisorctl -c {SUPERVISOR_CONF} signal HUP demoapp"
    try:
        pid = health(fleet.app_url(host))[1]["pid"]
        changed = f"[default]\naws_access_key_id = {new['AccessKeyId']}\naws_secret_access_key = {new['SecretAccessKey']}\n"
        fleet.exec(host, f"cat > {path}", input=changed)
        assert health(fleet.app_url(host))[1]["access_key_id"] == key["AccessKeyId"]  # not re-read
        fleet.exec(host, hup)
        status, body = wait_for(
            lambda: (r := health(fleet.app_url(host)))[1].get("access_key_id") == new["AccessKeyId"] and r,
            5, "the app to use the new key after SIGHUP")
        assert status == 200 and body["pid"] == pid, body

        fleet.exec(host, f"echo 'not [an ini' > {path}")
        fleet.exec(host, hup)
        status, body = wait_for(lambda: (r := health(fleet.app_url(host)))[0] == 500 and r, 5, "a 500")
        assert body["error"] == "CredentialsUnreadable" and path in body["reason"], body
    finally:
        fleet.exec(host, f"cat > {path}", input=original)
        fleet.exec(host, hup)
        ep.iam().delete_access_key(UserName=user, AccessKeyId=new["AccessKeyId"])
    wait_for(lambda: health(fleet.app_url(host))[1].get("access_key_id") == key["AccessKeyId"], 5,
             "the original key back")
    log = (fleet.host_dir(host) / "run" / "demoapp.log").read_text()
    assert new["AccessKeyId"] in log
    assert new["SecretAccessKey"] not in log and key["SecretAccessKey"] not in log


def test_pin_file_makes_the_app_refuse_another_key(fleet_env):
    fleet, ep, user, key = fleet_env
    host = fleet.hosts[2]
    fleet.exec(host, f"echo AKIAPINNEDELSEWHERE0 > {PIN_PATH}")
    try:
        status, body = health(fleet.app_url(host))
        assert (status, body["error"], body["pinned"]) == (503, "PinnedKeyMismatch", "AKIAPINNEDELSEWHERE0")
        fleet.exec(host, f"echo {key['AccessKeyId']} > {PIN_PATH}")
        assert health(fleet.app_url(host))[0] == 200
    finally:
        fleet.exec(host, f"rm -f {PIN_PATH}")
    assert health(fleet.app_url(host))[0] == 200


def test_down_removes_namespaces_links_and_processes(tmp_path, system_deps):
    fleet = Fleet(tmp_path, prefix="auto", subnet="auto")
    # No endpoint needed: the apps only have to run (their health answers 502).
    fleet.up(2, endpoint_url=f"http://{fleet.bridge_address}:9", credentials={
        "access_key_id": "AKIAFLEETDOWNTEST000", "secret_access_key": "not-a-real-secret"})
    try:
        # A multiplexed ssh session, as Ansible leaves behind, keeps a process in the namespace.
        ping = subprocess.run([str(BIN / "ansible"), "-i", str(fleet.inventory_path), "app", "-m",
                               "ansible.builtin.ping"], capture_output=True, text=True, timeout=120, check=False)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert any(fleet.control_dir.iterdir())
        masters = [int(p) for p in os.listdir("/proc") if p.isdigit() and str(fleet.control_dir) in cmdline(p)]
        assert masters, "no ssh control master found"
        started = []
        for host in fleet.hosts:
            pids = subprocess.run(["ip", "netns", "pids", host.name], capture_output=True, text=True,
                                  check=False).stdout.split()
            started += [int(p) for p in pids]
        assert len(started) >= 2 * 3  # sshd, supervisord, demoapp per host, plus ssh sessions
    finally:
        begun = time.monotonic()
        fleet.down()
        took = time.monotonic() - begun
    print(f"fleet down 2 hosts in {took:.2f}s")
    assert leftovers(fleet.prefix) == []
    assert [p for p in started + masters if alive(p)] == []
    assert not fleet.control_dir.exists() or not any(fleet.control_dir.iterdir())  # masters closed
    assert json.loads(fleet.state_file.read_text())["state"] == "down"
    assert fleet.down() == []  # idempotent
    with pytest.raises(FleetError, match="is not running"):  # the host is gone for good
        fleet.exec(1, "true")


def test_up_cleans_up_when_interrupted_half_way(tmp_path, system_deps):
    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps({"access_key_id": "AKIAFLEETINTERRUPT00", "secret_access_key": "x"}))
    creds.chmod(0o600)
    directory = tmp_path / "fleet"
    proc = subprocess.Popen([sys.executable, str(REPO / "tools" / "fleet.py"), "up", "2", "--dir", str(directory),
                             "--prefix", "auto", "--subnet", "auto", "--endpoint-url", "http://192.0.2.1:9",
                             "--initial-credentials", str(creds)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)

    def sshd_started():
        try:
            hosts = json.loads((directory / "fleet.json").read_text())["hosts"]
        except (OSError, ValueError):
            return False
        return hosts and all(h["sshd_pid"] for h in hosts) and hosts
    try:
        hosts = wait_for(sshd_started, 20, "fleet.py up to start sshd")
        proc.send_signal(signal.SIGINT)  # the apps take over a second to listen: still half way
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out + err
    assert "interrupted" in err
    assert leftovers(json.loads((directory / "fleet.json").read_text())["prefix"]) == []
    assert not any(alive(h["sshd_pid"]) for h in hosts)
    assert json.loads((directory / "fleet.json").read_text())["state"] == "down"
    assert not Fleet.load(directory).control_dir.exists()  # /tmp/rekey-cp-*: its path is long


def test_a_dead_fleet_is_named_and_removed_by_prefix(tmp_path, system_deps):
    creds = {"access_key_id": "AKIAFLEETSTALETEST00", "secret_access_key": "x"}
    first = Fleet(tmp_path / "first", prefix="auto", subnet="auto")
    prefix, url = first.prefix, f"http://{first.bridge_address}:9"
    first.up(1, endpoint_url=url, credentials=creds)
    pids = [first.hosts[0].sshd_pid, first.hosts[0].supervisord_pid]
    second = Fleet(tmp_path / "second", prefix=prefix, subnet="auto")
    with pytest.raises(FleetError, match=f"fleet.py down --dir {first.dir}"):
        second.up(1, endpoint_url=url, credentials=creds)
    first.state_file.unlink()  # its record is lost, as when its directory went away
    with pytest.raises(FleetError, match=f"fleet.py down --stale {prefix}"):
        second.up(1, endpoint_url=url, credentials=creds)
    removed = down_stale(prefix)
    assert f"netns {prefix}-host01" in removed and f"link {prefix}br0" in removed, removed
    assert leftovers(prefix) == []
    assert not any(alive(p) for p in pids)
    assert down_stale(prefix) == []


def test_a_subnet_in_use_is_refused(fleet_env, tmp_path):
    fleet, ep, user, key = fleet_env
    other = Fleet(tmp_path, prefix="auto", subnet=fleet.subnet)
    with pytest.raises(FleetError, match=f"subnet {fleet.subnet} overlaps {fleet.subnet} on {fleet.bridge}"):
        other.bridge_up()
    assert leftovers(other.prefix) == []


def test_bad_input_is_refused_with_the_value(tmp_path):
    with pytest.raises(FleetError, match=r"prefix 'Bad-Prefix!'"):
        Fleet(tmp_path, prefix="Bad-Prefix!")
    with pytest.raises(FleetError, match=r"subnet '10.231.0.1/24'"):
        Fleet(tmp_path, subnet="10.231.0.1/24")
    fleet = Fleet(tmp_path, prefix="auto", subnet="auto")
    with pytest.raises(FleetError, match=f"loopback address.*{fleet.bridge_address}"):
        fleet.up(1, endpoint_url="http://127.0.0.1:5000", credentials={})
    with pytest.raises(FleetError, match=r"host count 300 must be between 1 and"):
        fleet.up(300, endpoint_url=f"http://{fleet.bridge_address}:5000", credentials={})
    with pytest.raises(FleetError, match=r"access key id 'nope'"):
        fleet.up(1, endpoint_url=f"http://{fleet.bridge_address}:5000",
                 credentials={"access_key_id": "nope", "secret_access_key": "x"})
    assert leftovers(fleet.prefix) == []
