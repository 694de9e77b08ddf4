"""The fault matrix, host side (issue 4, item 1): the rotation (playbooks/rotate.yml) on a fleet of
three hosts (canary, then one host per batch) while one host misbehaves: its app refuses the new
key, cannot start on it, or hangs on it; its sshd stops answering before the rollout or its link
goes down in the middle of it; its credentials directory is read-only or full; its file belongs to another
user; or something outside the inventory still uses the old key during the idle window.

Each case asserts the invariants of ARCHITECTURE.md ("The promise"): the prober saw no auth
failure on a host left in service (gaps while an app restarts or hangs are reported, not failures);
IAM, polled out of band during the run, never held more than two keys, and every key an app used
stayed Active; the old key is Active after any failed rollout; the error names the host and what
failed; no backup of the run is left on a host; and a re-run with the fault removed converges to
one Active new key used by every host.

"Unhealthy only after deactivation" is tests/integration/test_rotate.py
::test_unhealthy_only_after_deactivation_reactivates_the_old_key (not repeated here).
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.integration.fleet_lab import fleet_lab
from tests.integration.rotate_support import PROBE_INTERVAL_S, demo_consumer, everywhere
from tools.prober import Prober

pytestmark = [
    pytest.mark.fleet,
    pytest.mark.skipif(os.geteuid() != 0, reason="the fleet needs root: network namespaces, mounts, sshd"),
]

CREDENTIALS = "/etc/demoapp/credentials"
CONFIG_DIR = "/etc/demoapp"
BACKUPS = "/var/lib/rekey-aws/backups"
# The demo app's test controls (tools/demoapp.py): each file pins the one key the app works with.
PIN = "/var/lib/demoapp/pin_key_id"              # /health answers 503 on another key
HANG_PIN = "/var/lib/demoapp/hang_pin_key_id"    # /health does not answer on another key
START_PIN = "/var/lib/demoapp/start_pin_key_id"  # the app exits at start on another key
SUPERVISORCTL = "supervisorctl -c /run/fleet/supervisord.conf"
FAILED_TASK = "rekey.aws.rotate : Fail when the rotation did not complete"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with fleet_lab(tmp_path_factory.mktemp("faults-hosts"), 3) as made:
        try:
            yield made
        finally:
            for host in made.hosts:  # a stopped sshd would outlive SIGTERM until teardown's SIGKILL
                sshd_resume(made.fleet, host)


@pytest.fixture
def clean(lab):
    """Every fault of the previous test undone on every host; the endpoint without faults."""
    lab.ep.clear_faults()
    lab.ep.reset_counts()
    for host in lab.hosts:
        heal(lab, host)
    yield lab
    lab.ep.clear_faults()
    for host in lab.hosts:
        heal(lab, host)


# --- faults on a host -----------------------------------------------------------------------

def heal(lab, host: str) -> None:
    sshd_resume(lab.fleet, host)
    lab.fleet.exec(host, "ip link set eth0 up")
    lab.fleet.exec(host, f"rm -f {PIN} {HANG_PIN} {START_PIN}; "
                         f"if grep -q ' {CONFIG_DIR} tmpfs ' /proc/mounts; then umount {CONFIG_DIR}; fi; "
                         f"if grep -q ' {CONFIG_DIR} .*[ ,]ro[ ,]' /proc/mounts; then mount -o remount,bind,rw {CONFIG_DIR}; fi")
    wait_for(lambda: port_open(lab, host, 22), 10, f"sshd of {host} to answer")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                found.append(int(entry.name))
    return found


def drop_ssh_sessions(fleet, host: str) -> None:
    """Kill the sshd sessions of a host (not its listener), so that Ansible's multiplexed
    connection to it (ControlPersist) closes at once. Left open, a master over a link that went
    down makes the next task wait for TCP to give up (over 90 s measured here, ~15 min by
    default): the rotation cannot fix that; ServerAliveInterval in the ssh arguments does."""
    todo, seen = _children(fleet.host(host).sshd_pid), []
    while todo:
        pid = todo.pop()
        seen.append(pid)
        todo += _children(pid)
    for pid in seen:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    # Gone only once the controller's side saw the close (a busy machine takes its time).
    address = fleet.host(host).address
    wait_for(lambda: not subprocess.run(["ss", "-Htn", "state", "established", "dst", f"{address}:22"],
                                        capture_output=True, text=True, check=True).stdout.strip(),
             10, f"the ssh connections to {host} to close")


def sshd_stop(fleet, host: str) -> None:
    """sshd stops answering (SIGSTOP: connections time out during the banner exchange) and
    its open sessions drop. The app keeps serving on its old key."""
    os.kill(fleet.host(host).sshd_pid, signal.SIGSTOP)
    drop_ssh_sessions(fleet, host)


def sshd_resume(fleet, host: str) -> None:
    try:
        os.kill(fleet.host(host).sshd_pid, signal.SIGCONT)
    except ProcessLookupError:
        pass


def link_down(fleet, host: str) -> None:
    """The host drops off the network (app included)."""
    drop_ssh_sessions(fleet, host)
    fleet.exec(host, "ip link set eth0 down")


def port_open(lab, host: str, port: int) -> bool:
    try:
        with socket.create_connection((lab.fleet.host(host).address, port), timeout=1) as sock:
            sock.settimeout(1)
            return sock.recv(4).startswith(b"SSH") if port == 22 else True
    except OSError:
        return False


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


# --- running and observing ------------------------------------------------------------------

class IamWatch:
    """Polls the user's keys out of band during a run: how many there were at most, and each
    key's statuses over time."""

    def __init__(self, lab, user: str, interval: float = 0.3):
        self.lab, self.user, self.interval = lab, user, interval
        self.max_keys = 0
        self.seen: dict[str, list[str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            keys = self.lab.keys(self.user)
            self.max_keys = max(self.max_keys, len(keys))
            for key_id, status in keys.items():
                history = self.seen.setdefault(key_id, [])
                if not history or history[-1] != status:
                    history.append(status)
            self._stop.wait(self.interval)

    def __enter__(self) -> "IamWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)


@dataclass
class Observed:
    run: object
    totals: dict
    timeline: list[dict]
    iam: IamWatch
    keys: dict[str, str]
    apps: dict[str, str | None]
    files: dict[str, str | None]
    seconds: float
    backups: list[str] = field(default_factory=list)

    @property
    def entry(self) -> dict:
        assert self.run.report, f"the run wrote no report\n{self.explain()}"
        [entry] = self.run.report["users"]
        return entry

    def failure(self) -> str:
        return self.run.task(FAILED_TASK)["result"]["msg"]

    def explain(self) -> str:
        run = self.run
        return f"rc={run.rc}\nSTDOUT:\n{run.stdout[-10000:]}\nSTDERR:\n{run.stderr[-3000:]}"


def observe(lab, user: str, consumers: dict, *, name: str, during=None, **overrides) -> Observed:
    """Run the rotation with the prober and the IAM watch on; `during(prober)` runs in a thread
    alongside (to inject a fault at the right moment). Then read every host and IAM."""
    timeline_path = lab.dir / f"{name}-{lab.runs + 1}-timeline.jsonl"
    previous = lab.last_report()
    prober = Prober(lab.fleet.app_urls, timeline=timeline_path, interval=PROBE_INTERVAL_S).start()
    side, side_errors = None, []

    def side_task():
        try:
            during(prober)
        except Exception as exc:  # pylint: disable=broad-exception-caught  # re-raised below
            side_errors.append(exc)

    started = time.monotonic()
    try:
        with IamWatch(lab, user) as iam:
            if during is not None:
                side = threading.Thread(target=side_task, daemon=True)
                side.start()
            run = lab.run(consumers, **overrides)
            if side is not None:
                side.join(60)
    finally:
        totals = prober.stop()
    if side_errors:
        raise side_errors[0]
    seconds = time.monotonic() - started
    if run.report and previous and run.report["run_id"] == previous["run_id"]:
        run.report = None  # this run wrote none
    timeline = [json.loads(line) for line in timeline_path.read_text().splitlines() if line]
    observed = Observed(run=run, totals=totals, timeline=timeline, iam=iam, keys=lab.keys(user),
                        apps={h: lab.app_key_id(h) for h in lab.hosts},
                        files={h: lab.file_key_id(h) for h in lab.hosts}, seconds=seconds)
    if run.report:
        observed.backups = lab.files(lab.hosts[0], f"{BACKUPS}/{run.report['run_id']}-*")
    print(f"{name}: rc={run.rc} in {seconds:.1f}s; durations {run.report and run.report['durations_s']}; "
          f"prober {totals['overall']}; message: {run.report and run.report['message']}")
    return observed


def assert_invariants(observed: Observed, *, out_of_service: tuple[str, ...] = ()) -> None:
    """What holds whatever the fault: no auth failure on a host left in service (so no key was
    deactivated or deleted under an app); at most two keys at any moment; every app runs on a key
    IAM holds Active, from its file; no backup of the run left behind."""
    for host, stats in observed.totals["hosts"].items():
        if host not in out_of_service:
            assert stats["auth_failures"] == 0, (host, stats)
    assert observed.iam.max_keys <= 2, observed.iam.seen
    assert len(observed.keys) <= 2, observed.keys
    for host, key_id in observed.apps.items():
        assert key_id is not None, f"{host}: the app is not healthy after the run"
        assert observed.keys.get(key_id) == "Active", f"{host} runs on {key_id}; IAM holds {observed.keys}"
        assert observed.files[host] == key_id, f"{host}: file holds {observed.files[host]}, app runs on {key_id}"
    assert observed.backups == [], observed.backups


def assert_rolled_back(observed: Observed, old_id: str) -> None:
    """A failed rollout: the run failed, the old key is the only key and Active, every app is on it,
    and the new key (created, then deleted) was never deactivated under a host."""
    assert observed.run.rc != 0, observed.explain()
    entry = observed.entry
    assert entry["result"] == "rolled_back", f"{entry}\n{observed.explain()}"
    assert entry["old_key_final_state"] == "Active" and entry["new_key_final_state"] == "deleted", entry
    assert observed.keys == {old_id: "Active"}
    assert observed.iam.seen[old_id] == ["Active"], observed.iam.seen
    assert set(observed.apps.values()) == {old_id} and set(observed.files.values()) == {old_id}


def converge(lab, user: str, consumers: dict, old_id: str, **overrides) -> str:
    """A forced re-run without the fault: one Active new key, used by every host."""
    overrides.setdefault("rotate_serial", "100%")
    again = observe(lab, user, consumers, name="converge", rotate_force=True, **overrides)
    assert again.run.rc == 0, again.explain()
    entry = again.entry
    assert entry["result"] == "rotated" and entry["old_key_id"] == old_id, entry
    new_id = entry["new_key_id"]
    assert again.keys == {new_id: "Active"}
    assert set(again.apps.values()) == {new_id} and set(again.files.values()) == {new_id}
    assert_invariants(again)
    assert again.totals["overall"]["auth_failures"] == 0, again.totals
    return new_id


def untouched(lab, hosts) -> dict[str, str]:
    """Content and modification time (ns) of each host's credentials file."""
    return {h: lab.fleet.exec(h, f"cat {CREDENTIALS}; stat -c '%.9Y %U %a' {CREDENTIALS}").stdout for h in hosts}


def auth_failures(observed: Observed) -> list[dict]:
    return [p for p in observed.timeline if p["outcome"] == "auth_failure"]


# --- the demo app's controls ----------------------------------------------------------------

def test_demoapp_fault_controls(clean):
    """The controls the cases below rely on: a hang pin makes /health time out on another key, a
    start pin makes a restart on another key fail."""
    lab = clean
    user, old = lab.seed()
    host = lab.hosts[0]
    lab.fleet.exec(host, f"echo AKIAPINNEDELSEWHERE0 > {HANG_PIN}")
    status, body = lab.health(host)  # 5 s client timeout
    assert status == -1 and "timed out" in body["error"], (status, body)
    lab.fleet.exec(host, f"echo {old['AccessKeyId']} > {HANG_PIN}")
    assert lab.health(host)[0] == 200
    lab.fleet.exec(host, f"echo AKIAPINNEDELSEWHERE0 > {START_PIN}")
    restart = lab.fleet.exec(host, f"{SUPERVISORCTL} restart demoapp", check=False)
    assert restart.returncode != 0 and "spawn error" in restart.stdout, restart
    lab.fleet.exec(host, f"rm -f {START_PIN}; {SUPERVISORCTL} start demoapp")
    lab.wait_health(host, old["AccessKeyId"])


# --- the cases ------------------------------------------------------------------------------

def test_canary_unhealthy_on_the_new_key(clean):
    """The canary's app refuses the new key (pin): the canary goes back to the old key, no other
    host is touched, the new key is deleted. The refusals the prober sees are the canary's own
    health check failing, on the new key only, before the rollback."""
    lab = clean
    user, old = lab.seed()
    canary, others = lab.hosts[0], lab.hosts[1:]
    lab.pin(canary, old["AccessKeyId"])
    before = untouched(lab, others)
    consumers = everywhere(lab, demo_consumer(user, health_timeout_s=3))
    observed = observe(lab, user, consumers, name="canary", rotate_force=True)

    assert_rolled_back(observed, old["AccessKeyId"])
    new_id = observed.entry["new_key_id"]
    assert observed.entry["hosts_rolled_back"] == [canary] and observed.entry["hosts_not_reached"] == others
    failure = observed.failure()
    assert f"{canary} demoapp: health check GET http://127.0.0.1:8080/health expected HTTP 200 with {new_id}" in failure
    assert "PinnedKeyMismatch" in failure
    assert untouched(lab, others) == before
    refused = auth_failures(observed)
    assert refused and {(p["host"], p["key_id"], p["error"]) for p in refused} == {(canary, new_id, "PinnedKeyMismatch")}
    assert_invariants(observed, out_of_service=(canary,))
    for host in others:
        assert observed.totals["hosts"][host]["gaps"] == 0, observed.totals["hosts"][host]

    lab.unpin(canary)
    converge(lab, user, consumers, old["AccessKeyId"])


def test_restart_fails_on_host_2_of_3(clean):
    """The app on host 2 cannot start on the new key (supervisorctl restart: spawn error): host 2
    gets its old file back and its app restarted on the old key; the canary, already updated, is
    rolled back by finish; host 3 is never touched."""
    lab = clean
    user, old = lab.seed()
    canary, broken, last = lab.hosts
    lab.fleet.exec(broken, f"echo {old['AccessKeyId']} > {START_PIN}")
    before = untouched(lab, [last])
    consumers = everywhere(lab, demo_consumer(user))
    observed = observe(lab, user, consumers, name="restart", rotate_force=True)

    assert_rolled_back(observed, old["AccessKeyId"])
    entry = observed.entry
    assert entry["hosts_rolled_back"] == [canary, broken] and entry["hosts_not_reached"] == [last], entry
    failure = observed.failure()
    assert f"{broken}: {SUPERVISORCTL} restart demoapp" in failure and "spawn error" in failure, failure
    assert untouched(lab, [last]) == before
    assert observed.totals["hosts"][broken]["gaps"] > 0  # down while it failed to start, reported
    assert_invariants(observed)
    assert observed.totals["overall"]["auth_failures"] == 0

    # A run killed before its finish leaves its backups behind: the next run for that consumer
    # removes them, and leaves another consumer's backups alone.
    stale = f"{BACKUPS}/20200101T000000Z-000001-{broken}-demoapp.bak"
    other = f"{BACKUPS}/20200101T000000Z-000001-{broken}-demoapp-other.bak"
    lab.fleet.exec(broken, f"umask 077; mkdir -p {BACKUPS}; echo old > {stale}; echo other > {other}")
    lab.fleet.exec(broken, f"rm -f {START_PIN}")
    try:
        converge(lab, user, consumers, old["AccessKeyId"])
        assert lab.files(broken, f"{BACKUPS}/20200101T000000Z-*-{broken}-*") == [other]
    finally:
        lab.fleet.exec(broken, f"rm -f {stale} {other}")


def test_health_check_times_out_on_host_3(clean):
    """The app on host 3 hangs on the new key: its health check gives up after health_timeout_s
    (not after several request timeouts), host 3 is put back, hosts 1 and 2 are rolled back."""
    lab = clean
    user, old = lab.seed()
    first, second, hung = lab.hosts
    lab.fleet.exec(hung, f"echo {old['AccessKeyId']} > {HANG_PIN}")
    consumers = everywhere(lab, demo_consumer(user))
    consumers[hung] = [demo_consumer(user, health_timeout_s=3)]
    observed = observe(lab, user, consumers, name="hang", rotate_force=True)

    assert_rolled_back(observed, old["AccessKeyId"])
    entry = observed.entry
    assert entry["hosts_rolled_back"] == [first, second, hung], entry
    failure = observed.failure()
    assert f"{hung} demoapp: health check GET http://127.0.0.1:8080/health expected HTTP 200" in failure
    assert "got no answer" in failure and "timed out" in failure, failure
    # The budget is 3 s: one request that times out after 3 s, not four that wait 5 s each.
    attempts = re.search(rf"{hung} demoapp: health check GET [^;]*\((\d+) attempts\)", failure)
    assert attempts and int(attempts.group(1)) <= 2, failure
    assert_invariants(observed)
    assert observed.totals["overall"]["auth_failures"] == 0

    lab.fleet.exec(hung, f"rm -f {HANG_PIN}")
    converge(lab, user, consumers, old["AccessKeyId"])


def test_host_unreachable_before_the_rollout(clean):
    """sshd on host 3 stops answering before the run; its app keeps serving on the old key.
    Decided: every consumer's health check runs on every host of the rollout before any IAM
    write; host 3 does not answer, so the run is refused: no key is created, no host touched, and
    the old key (which host 3 still uses) stays Active. Never: retire the old key while a
    consumer host was not updated."""
    lab = clean
    user, old = lab.seed()
    down = lab.hosts[2]
    before = untouched(lab, lab.hosts)
    consumers = everywhere(lab, demo_consumer(user))
    sshd_stop(lab.fleet, down)
    try:
        observed = observe(lab, user, consumers, name="unreachable-before", rotate_force=True)
    finally:
        sshd_resume(lab.fleet, down)

    assert observed.run.rc != 0, observed.explain()
    entry = observed.entry
    assert entry["result"] == "refused" and entry["new_key_id"] is None, entry
    assert observed.keys == {old["AccessKeyId"]: "Active"} and observed.iam.max_keys == 1, observed.iam.seen
    failure = observed.failure()
    assert "refused before any change" in failure and f"{down} demoapp: host unreachable" in failure, failure
    assert untouched(lab, lab.hosts) == before
    assert_invariants(observed)
    assert observed.totals["overall"]["auth_failures"] == 0 and observed.totals["overall"]["gaps"] == 0

    converge(lab, user, consumers, old["AccessKeyId"])


def test_host_unreachable_in_the_middle_of_a_batch(clean):
    """Host 2's link goes down while the canary restarts (seen by the prober): host 2 is found
    unreachable in its batch, never got the new key; the canary is rolled back; the old key stays."""
    lab = clean
    user, old = lab.seed()
    canary, down, last = lab.hosts
    before = untouched(lab, [down, last])
    consumers = everywhere(lab, demo_consumer(user))
    cut = threading.Event()

    def take_down_at_the_canary_restart(prober):
        wait_for(lambda: prober.totals()["hosts"][canary]["gaps"] > 0
                 or len(prober.totals()["hosts"][canary]["key_ids"]) > 1, 120, "the canary's restart")
        link_down(lab.fleet, down)
        cut.set()

    try:
        observed = observe(lab, user, consumers, name="unreachable-mid", during=take_down_at_the_canary_restart,
                           rotate_force=True)
    finally:
        lab.fleet.exec(down, "ip link set eth0 up")
    assert cut.is_set()
    wait_for(lambda: lab.app_key_id(down), 10, f"{down}'s app to answer again")
    observed.apps[down] = lab.app_key_id(down)

    assert_rolled_back(observed, old["AccessKeyId"])
    entry = observed.entry
    assert entry["hosts_rolled_back"] == [canary] and entry["hosts_not_reached"] == [last], entry
    assert [f["host"] for f in entry["hosts_failed"]] == [down], entry
    failure = observed.failure()
    assert down in failure and "unreachable" in failure, failure
    assert untouched(lab, [down, last]) == before
    assert_invariants(observed, out_of_service=(down,))
    assert observed.totals["overall"]["auth_failures"] == 0

    converge(lab, user, consumers, old["AccessKeyId"])


# Each makes host 2's /etc/demoapp refuse writes, in its mount namespace, keeping the files.
READ_ONLY = f"mount -o remount,bind,ro {CONFIG_DIR}"
# A 64 KiB tmpfs over the directory, holding a copy of its files (owners, modes and times kept),
# then filled up.
DISK_FULL = (f"d=$(mktemp -d) && cp -a {CONFIG_DIR}/. $d/ && mount -t tmpfs -o size=64k,mode=0755 tmpfs {CONFIG_DIR}"
             f" && cp -a $d/. {CONFIG_DIR}/ && rm -rf $d && {{ dd if=/dev/zero of={CONFIG_DIR}/filler bs=1k 2>/dev/null || true; }}")


@pytest.mark.parametrize("fault, error", [(READ_ONLY, "Read-only file system"), (DISK_FULL, "No space left on device")],
                         ids=["read-only", "disk-full"])
def test_credentials_directory_refuses_writes_on_host_2(clean, fault, error):
    """Host 2's /etc/demoapp is read-only, or its file system is full: the write fails with the
    file untouched, host 2 stays on the old key, the canary is rolled back, host 3 is not reached."""
    lab = clean
    user, old = lab.seed()
    canary, refusing, last = lab.hosts
    lab.fleet.exec(refusing, fault)
    before = untouched(lab, [refusing, last])
    consumers = everywhere(lab, demo_consumer(user))
    observed = observe(lab, user, consumers, name="refuses-writes", rotate_force=True)

    assert_rolled_back(observed, old["AccessKeyId"])
    entry = observed.entry
    assert entry["hosts_rolled_back"] == [canary, refusing] and entry["hosts_not_reached"] == [last], entry
    failure = observed.failure()
    assert refusing in failure and CREDENTIALS in failure and error in failure, failure
    assert untouched(lab, [refusing, last]) == before
    assert_invariants(observed)
    assert observed.totals["overall"]["auth_failures"] == 0

    heal(lab, refusing)
    converge(lab, user, consumers, old["AccessKeyId"])


def test_credentials_file_owned_by_another_user(clean):
    """Host 2's file is root:root 0640 (rewritten by some tool as root) while its consumer
    declares owner rekeyapp; the app still runs on the key it read before. Decided: the role
    writes as root and sets the declared owner, group and mode (the inventory is the desired
    state; refusing would leave a file the app cannot read at its next restart), and the rotation
    completes."""
    lab = clean
    user, old = lab.seed()
    foreign = lab.hosts[1]
    lab.fleet.exec(foreign, f"chown root:root {CREDENTIALS} && chmod 0640 {CREDENTIALS}")
    assert lab.stat(foreign, CREDENTIALS) == "640 root"
    consumers = everywhere(lab, demo_consumer(user))
    observed = observe(lab, user, consumers, name="owner", rotate_force=True)

    assert observed.run.rc == 0, observed.explain()
    entry = observed.entry
    assert entry["result"] == "rotated" and entry["hosts_updated"] == lab.hosts, entry
    new_id = entry["new_key_id"]
    assert observed.keys == {new_id: "Active"}
    assert set(observed.apps.values()) == {new_id}
    assert lab.stat(foreign, CREDENTIALS) == "600 rekeyapp"
    assert_invariants(observed)
    assert observed.totals["overall"]["auth_failures"] == 0


def test_old_key_used_by_an_outsider_during_the_idle_window(clean):
    """Something outside the inventory calls STS with the old key while finish watches it: the
    run stops before deactivating, names the service and region of that use; both keys stay
    Active; the hosts stay on the new key and healthy. Once the outsider stopped, a plain re-run
    resumes that rotation (no third key) and retires the old key."""
    lab = clean
    user, old = lab.seed()
    consumers = everywhere(lab, demo_consumer(user))
    used = []

    def outsider(prober):
        # Once every app answers on a key other than the old one, finish records the cutover and
        # watches for 10 s: calls over the next 15 s land in that window, whatever the delay.
        wait_for(lambda: all(h["key_ids"] and h["key_ids"][-1] != old["AccessKeyId"]
                             for h in prober.totals()["hosts"].values()), 120, "every app on the new key")
        sts = lab.ep.sts(old["AccessKeyId"], old["SecretAccessKey"])  # in band: IAM records the use
        until = time.monotonic() + 15
        while time.monotonic() < until:
            used.append(sts.get_caller_identity()["Arn"])  # raises if the old key were refused
            time.sleep(0.5)

    observed = observe(lab, user, consumers, name="outsider", during=outsider, rotate_force=True,
                       rotate_serial="100%", rotate_idle_window_s=10)

    assert used, "the outsider never called STS"
    assert observed.run.rc != 0, observed.explain()
    entry = observed.entry
    new_id = entry["new_key_id"]
    assert entry["result"] == "old_key_in_use", entry
    assert f"the old key {old['AccessKeyId']} was used at" in entry["message"]
    assert "by sts in us-east-1" in entry["message"], entry["message"]
    assert observed.keys == {old["AccessKeyId"]: "Active", new_id: "Active"}
    assert observed.iam.seen[old["AccessKeyId"]] == ["Active"], observed.iam.seen
    assert set(observed.apps.values()) == {new_id} and set(observed.files.values()) == {new_id}
    assert_invariants(observed)
    assert observed.totals["overall"]["auth_failures"] == 0

    again = observe(lab, user, consumers, name="outsider-rerun")
    assert again.run.rc == 0, again.explain()
    assert again.entry["old_key_id"] == old["AccessKeyId"] and again.entry["new_key_id"] == new_id, again.entry
    assert again.keys == {new_id: "Active"}
    assert set(again.apps.values()) == {new_id}
    assert_invariants(again)
    assert again.totals["overall"]["auth_failures"] == 0
