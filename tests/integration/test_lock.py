"""The per-user lock in the rotation (issue 4, item 3): a second run for a user another run is
rotating refuses at once, naming the holder and the expiry, and writes nothing; the lock a killed
run left is refused while it lives, taken after it expired, and taken at once with
rotate_lock_takeover. The lock is read out of band (IAM user tags, boto3)."""
from __future__ import annotations

import os
import time

import pytest

from tests.integration.crash_support import (LOCK_HOLDER_TAG, LOCK_RUN_TAG, LOCK_UNTIL_TAG, RUN_TAG, BackgroundRun,
                                             KeyWatcher, locked, phase_is, tags, wait_lock_expired)
from tests.integration.fleet_lab import fleet_lab
from tests.integration.rotate_support import PROBE_INTERVAL_S, demo_consumer, everywhere
from tools.prober import Prober

pytestmark = [
    pytest.mark.fleet,
    pytest.mark.skipif(os.geteuid() != 0, reason="the fleet needs root: network namespaces, mounts, sshd"),
]

LOCK_TASK = "rekey.aws.rotate : Lock the users of this run"
FAST = {"rotate_deactivate_settle_s": 1, "rotate_verify_consecutive": 2}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with fleet_lab(tmp_path_factory.mktemp("lock"), 2) as made:
        yield made


def explain(run):
    return f"rc={run.rc}\nSTDOUT:\n{run.stdout[-8000:]}\nSTDERR:\n{run.stderr[-3000:]}"


def assert_refused_naming(run, user, lock_tags, renewed_tags=None):
    """The run stopped at the lock, naming the user, the run holding it, its holder and expiry
    (as it was when the run started, or as the holder renewed it while the run ran), and changed
    nothing: no task before the lock writes."""
    assert run.rc != 0
    failure = run.task(LOCK_TASK)
    assert failure["status"] == "failed"
    msg = failure["result"]["msg"]
    for part in (user, lock_tags[LOCK_RUN_TAG], lock_tags[LOCK_HOLDER_TAG]):
        assert part in msg, (part, msg)
    expiries = {lock_tags[LOCK_UNTIL_TAG], (renewed_tags or lock_tags)[LOCK_UNTIL_TAG]}
    assert any(until in msg for until in expiries), (expiries, msg)
    assert [r["task"] for r in run.changed] == []
    assert not any(r["task"].startswith("rekey.aws.rotate : Create") for r in run.results)
    # It leaves its own report (not the holder's): refused, naming the holder.
    report = run.report
    assert report and report["run_id"] != lock_tags[LOCK_RUN_TAG], report
    assert f"rekey.aws rotation {report['run_id']}" in run.stdout, "this run wrote no report"
    assert not report["ok"] and lock_tags[LOCK_HOLDER_TAG] in report["message"], report
    assert [u["result"] for u in report["users"]] == ["refused"], report["users"]


def assert_rotated(lab, user, old_id, run):
    assert run.rc == 0, explain(run)
    assert_converged(lab, user, old_id)


def assert_converged(lab, user, old_id):
    keys = lab.keys(user)
    assert len(keys) == 1 and old_id not in keys and set(keys.values()) == {"Active"}, keys
    [new_id] = keys
    assert all(lab.app_key_id(h) == new_id for h in lab.hosts)
    assert tags(lab, user) == {}, "state or lock left behind"


def test_second_run_refuses_at_once_and_writes_nothing(lab):
    user, old = lab.seed(prefix="lock-two")
    consumers = everywhere(lab, demo_consumer(user))
    with KeyWatcher(lab, user) as watcher:
        first = BackgroundRun(lab, consumers, lab.dir, rotate_force=True, **FAST)
        try:
            deadline = time.monotonic() + 120
            while not locked(lab, user)(first):
                assert first.proc.poll() is None and time.monotonic() < deadline, first.output[-4000:]
                time.sleep(0.05)
            held = tags(lab, user)
            before = lab.keys(user)
            started = time.monotonic()
            second = lab.run(consumers, rotate_force=True, **FAST)
            took = time.monotonic() - started
            # The second run ended while the first still held the lock: it did not wait for it.
            renewed = tags(lab, user)
            assert renewed.get(LOCK_RUN_TAG) == held[LOCK_RUN_TAG], "the first run lost its lock"
            assert first.proc.poll() is None, "the first run ended before the second was refused"
        finally:
            rc = first.wait()
    print(f"\nsecond run refused in {took:.1f} s")
    assert_refused_naming(second, user, held, renewed)
    # The first run was not disturbed and rotated once: never a third key.
    assert rc == 0, first.output[-6000:]
    assert_converged(lab, user, old["AccessKeyId"])
    assert len(before) <= 2 and watcher.most <= 2, watcher.seen


def test_lock_of_a_killed_run_is_refused_until_it_expires(lab):
    user, old = lab.seed(prefix="lock-dead")
    consumers = everywhere(lab, demo_consumer(user))
    prober = Prober(lab.fleet.app_urls, interval=PROBE_INTERVAL_S).start()
    try:
        killed = BackgroundRun(lab, consumers, lab.dir, rotate_force=True, rotate_lock_ttl_s=40, **FAST)
        killed.kill_when(phase_is(lab, user, "key_stored", "key_verified", "distributing"))
        held = tags(lab, user)
        refused = lab.run(consumers, **FAST)
        assert_refused_naming(refused, user, held)
        assert tags(lab, user)[LOCK_RUN_TAG] == held[LOCK_RUN_TAG]
        wait_lock_expired(lab, user)
        resumed = lab.run(consumers, **FAST)
    finally:
        totals = prober.stop()
    assert_rotated(lab, user, old["AccessKeyId"], resumed)
    assert f"resuming rotation {held[RUN_TAG]} of user {user}" in resumed.stdout
    lock = resumed.task(LOCK_TASK)["result"]["locks"]
    assert [(entry["user_name"], entry["taken_over"]) for entry in lock] == [(user, True)]
    assert totals["overall"]["auth_failures"] == 0, totals


def test_takeover_flag_takes_a_live_lock_at_once(lab):
    user, old = lab.seed(prefix="lock-take")
    consumers = everywhere(lab, demo_consumer(user))
    killed = BackgroundRun(lab, consumers, lab.dir, rotate_force=True, **FAST)  # the default ttl, an hour
    killed.kill_when(phase_is(lab, user, "planned", "key_created"))
    held = tags(lab, user)
    run = lab.run(consumers, rotate_lock_takeover=True, **FAST)
    assert_rotated(lab, user, old["AccessKeyId"], run)
    assert f"resuming rotation {held[RUN_TAG]} of user {user}" in run.stdout
    [entry] = run.task(LOCK_TASK)["result"]["locks"]
    assert entry["user_name"] == user and entry["taken_over"] is True
