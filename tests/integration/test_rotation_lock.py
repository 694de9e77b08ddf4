"""rekey.aws.rotation_lock through real ansible-playbook runs against the strict endpoint. Lock tags
are checked out of band with the endpoint's admin client; write counts prove that refusals, check
mode and idempotent unlocks wrote nothing."""
from __future__ import annotations

import datetime
import time

import botocore.exceptions

from tests.support.ansible_run import local_play, run_playbook

MODULE = "rekey.aws.rotation_lock"
LOCK_TAGS = ("rekey:lock-run", "rekey:lock-holder", "rekey:lock-until")


def lock_task(name, check_mode=False, **args):
    task = {"name": name, MODULE: dict({"user_names": "{{ users }}"}, **args)}
    if check_mode:
        task["check_mode"] = True
    return task


def play(endpoint, tasks, **vars):
    return local_play(tasks, vars=vars, module_defaults={"group/rekey.aws.aws": endpoint.connection_args()})


def aws_tags(endpoint, user):
    return {t["Key"]: t["Value"] for t in endpoint.iam().list_user_tags(UserName=user)["Tags"]}


def aws_lock(endpoint, user):
    tags = aws_tags(endpoint, user)
    return {k: tags[k] for k in LOCK_TAGS if k in tags} or None


def put_lock(endpoint, user, run_id, holder, until):
    endpoint.iam().tag_user(UserName=user, Tags=[
        {"Key": "rekey:lock-run", "Value": run_id}, {"Key": "rekey:lock-holder", "Value": holder},
        {"Key": "rekey:lock-until", "Value": until}])


def iso_in(seconds):
    moment = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds)
    return moment.replace(microsecond=0).isoformat()


def refusal(user, run_id, holder, until):
    return (f"IAM user '{user}' is locked by run {run_id} (holder {holder}) until {until}; wait for it to finish, "
            f"or after {until} run again; pass rotate_lock_takeover=true (takeover=true on rekey.aws.rotation_lock) "
            "to take it over now if that run is dead")


def assert_clean(run):
    assert "Traceback" not in run.stdout + run.stderr and "MODULE FAILURE" not in run.stdout


def test_lock_rhythm_second_run_refused_and_same_run_retakes(endpoint):
    users = sorted([endpoint.new_user("lock"), endpoint.new_user("lock")])
    endpoint.iam().tag_user(UserName=users[0], Tags=[{"Key": "team", "Value": "payments"}])
    endpoint.reset_counts()
    mine = {"run_id": "run-1", "holder": "ctl-1 pid 7", "ttl_s": 600}
    run = run_playbook(play(endpoint, [
        lock_task("lock check", check_mode=True, **mine),
        lock_task("lock", **mine),
    ], users=users), diff=True)
    assert run.rc == 0, run.stdout + run.stderr
    assert endpoint.write_counts() == {"iam:TagUser": 2}
    # One read per user before writing, one read-back per user after.
    assert endpoint.counts() == {"iam:ListUserTags": 2 + 4, "iam:TagUser": 2}
    predicted = run.task("lock check")["result"]
    assert predicted["changed"] is True and predicted["refused"] == []
    assert predicted["diff"]["before"] == {"locks": {users[0]: None, users[1]: None}}
    locked = run.task("lock")["result"]
    until = locked["locks"][0]["until"]
    assert locked["changed"] is True and locked["refused"] == []
    assert locked["locks"] == [{"user_name": u, "run_id": "run-1", "holder": "ctl-1 pid 7", "until": until,
                                "taken_over": False} for u in users]
    assert 595 <= (datetime.datetime.fromisoformat(until) - datetime.datetime.now(datetime.timezone.utc)).total_seconds() <= 601
    assert locked["diff"]["after"] == {"locks": {u: {"run_id": "run-1", "holder": "ctl-1 pid 7", "until": until}
                                                 for u in users}}
    for user in users:
        assert aws_lock(endpoint, user) == {"rekey:lock-run": "run-1", "rekey:lock-holder": "ctl-1 pid 7",
                                            "rekey:lock-until": until}
    assert aws_tags(endpoint, users[0])["team"] == "payments"

    endpoint.reset_counts()
    theirs = {"run_id": "run-2", "holder": "ctl-2 pid 9"}
    second = run_playbook(play(endpoint, [
        dict(lock_task("second run check", check_mode=True, **theirs), ignore_errors=True),
        dict(lock_task("second run", **theirs), ignore_errors=True),
    ], users=users))
    assert second.rc == 0, second.stdout
    for name in ("second run check", "second run"):
        result = second.task(name)
        assert result["status"] == "ignored"
        assert result["result"]["msg"] == ". ".join(refusal(u, "run-1", "ctl-1 pid 7", until) for u in users) + (
            ". Nothing was written for any user.")
        assert result["result"]["refused"] == [{"user_name": u, "run_id": "run-1", "holder": "ctl-1 pid 7",
                                                "until": until, "expired": False} for u in users]
    assert endpoint.write_counts() == {}
    assert endpoint.counts() == {"iam:ListUserTags": 4}
    assert all(aws_lock(endpoint, u)["rekey:lock-run"] == "run-1" for u in users)

    time.sleep(1.1)
    retake = run_playbook(play(endpoint, [lock_task("retake", **mine)], users=users))
    assert retake.rc == 0, retake.stdout
    again = retake.task("retake")["result"]
    assert again["changed"] is True
    assert [(e["run_id"], e["taken_over"]) for e in again["locks"]] == [("run-1", False)] * 2
    assert again["locks"][0]["until"] > until
    assert aws_lock(endpoint, users[1])["rekey:lock-until"] == again["locks"][0]["until"]
    assert_clean(run)


def test_one_locked_user_refuses_the_whole_set_and_writes_nothing(endpoint):
    free, busy = sorted([endpoint.new_user("set"), endpoint.new_user("set")])
    until = iso_in(900)
    put_lock(endpoint, busy, "run-0", "awx-node-1 pid 533", until)
    endpoint.reset_counts()
    run = run_playbook(play(endpoint, [dict(lock_task("lock", run_id="run-1", holder="ctl-1 pid 7"),
                                            ignore_errors=True)], users=[free, busy]))
    result = run.task("lock")["result"]
    assert result["msg"] == refusal(busy, "run-0", "awx-node-1 pid 533", until) + ". Nothing was written for any user."
    assert result["locks"] == [
        {"user_name": free, "run_id": None, "holder": None, "until": None, "taken_over": False},
        {"user_name": busy, "run_id": "run-0", "holder": "awx-node-1 pid 533", "until": until, "taken_over": False}]
    assert endpoint.write_counts() == {}
    assert aws_lock(endpoint, free) is None
    assert aws_lock(endpoint, busy)["rekey:lock-run"] == "run-0"
    assert_clean(run)


def test_an_expired_lock_is_taken(endpoint):
    user = endpoint.new_user("expired")
    run = run_playbook(play(endpoint, [lock_task("short lock", run_id="run-0", holder="ctl-0 pid 1", ttl_s=1)],
                            users=[user]))
    assert run.rc == 0, run.stdout
    short = run.task("short lock")["result"]["locks"][0]["until"]
    time.sleep(max(0.0, (datetime.datetime.fromisoformat(short)
                         - datetime.datetime.now(datetime.timezone.utc)).total_seconds()) + 0.2)
    run = run_playbook(play(endpoint, [lock_task("take expired", run_id="run-1", holder="ctl-1 pid 7")], users=[user]),
                       diff=True)
    assert run.rc == 0, run.stdout
    taken = run.task("take expired")["result"]
    assert taken["locks"][0]["run_id"] == "run-1" and taken["locks"][0]["taken_over"] is True
    assert taken["diff"]["before"] == {"locks": {user: {"run_id": "run-0", "holder": "ctl-0 pid 1", "until": short}}}
    assert aws_lock(endpoint, user)["rekey:lock-run"] == "run-1"
    assert_clean(run)


def test_takeover_takes_a_live_lock(endpoint):
    user = endpoint.new_user("takeover")
    put_lock(endpoint, user, "run-0", "ctl-0 pid 1", iso_in(3600))
    run = run_playbook(play(endpoint, [
        lock_task("takeover check", check_mode=True, run_id="run-1", holder="ctl-1 pid 7", takeover=True),
        lock_task("takeover", run_id="run-1", holder="ctl-1 pid 7", takeover=True),
    ], users=[user]))
    assert run.rc == 0, run.stdout
    assert endpoint.write_counts() == {"iam:TagUser": 1}
    for name in ("takeover check", "takeover"):
        entry = run.task(name)["result"]["locks"][0]
        assert (entry["run_id"], entry["holder"], entry["taken_over"]) == ("run-1", "ctl-1 pid 7", True)
    assert aws_lock(endpoint, user)["rekey:lock-run"] == "run-1"
    assert_clean(run)


def test_unlock_removes_only_our_lock_and_leaves_a_strangers(endpoint):
    ours, theirs = sorted([endpoint.new_user("unlock"), endpoint.new_user("unlock")])
    endpoint.iam().tag_user(UserName=ours, Tags=[{"Key": "team", "Value": "payments"},
                                                 {"Key": "rekey:phase", "Value": "distributed"}])
    put_lock(endpoint, ours, "run-1", "ctl-1 pid 7", iso_in(600))
    their_until = iso_in(600)
    put_lock(endpoint, theirs, "run-2", "ctl-2 pid 9", their_until)
    endpoint.reset_counts()
    run = run_playbook(play(endpoint, [
        lock_task("unlock check", check_mode=True, run_id="run-1", state="unlocked"),
        lock_task("unlock", run_id="run-1", state="unlocked"),
        lock_task("unlock again check", check_mode=True, run_id="run-1", state="unlocked"),
    ], users=[ours, theirs, "no-such-user-z"]), diff=True)
    assert run.rc == 0, run.stdout
    assert [run.task(n)["changed"] for n in ("unlock check", "unlock", "unlock again check")] == [True, True, False]
    assert endpoint.write_counts() == {"iam:UntagUser": 1}
    unlocked = run.task("unlock")["result"]
    their_entry = {"user_name": theirs, "run_id": "run-2", "holder": "ctl-2 pid 9", "until": their_until}
    assert unlocked["locks"] == [
        {"user_name": "no-such-user-z", "run_id": None, "holder": None, "until": None, "taken_over": False},
        {"user_name": ours, "run_id": None, "holder": None, "until": None, "taken_over": False},
        dict(their_entry, taken_over=False)]
    assert unlocked["refused"] == [dict(their_entry, expired=False)]
    assert unlocked["diff"]["after"] == {"locks": {"no-such-user-z": None, ours: None, theirs: {
        "run_id": "run-2", "holder": "ctl-2 pid 9", "until": their_until}}}
    warning = (f"IAM user '{theirs}' is locked by run run-2 (holder ctl-2 pid 9) until {their_until}, not by run "
               "run-1: left alone")
    assert warning in unlocked["warnings"]
    assert aws_tags(endpoint, ours) == {"team": "payments", "rekey:phase": "distributed"}
    assert aws_lock(endpoint, theirs)["rekey:lock-run"] == "run-2"

    endpoint.reset_counts()
    rerun = run_playbook(play(endpoint, [lock_task("unlock again", run_id="run-1", state="unlocked")],
                              users=[ours, theirs]))
    assert rerun.rc == 0, rerun.stdout
    assert rerun.task("unlock again")["result"]["changed"] is False
    assert endpoint.write_counts() == {}

    forced = run_playbook(play(endpoint, [lock_task("unlock theirs", run_id="run-1", state="unlocked", takeover=True)],
                               users=[theirs]))
    assert forced.rc == 0, forced.stdout
    result = forced.task("unlock theirs")["result"]
    assert result["changed"] is True and result["refused"] == []
    assert result["locks"] == [{"user_name": theirs, "run_id": None, "holder": None, "until": None, "taken_over": True}]
    assert aws_lock(endpoint, theirs) is None
    assert_clean(run)


def test_bad_options_and_missing_user_fail_before_any_write(endpoint):
    user = endpoint.new_user("opts")
    full = endpoint.new_user("full")
    endpoint.iam().tag_user(UserName=full, Tags=[{"Key": "t%02d" % i, "Value": ""} for i in range(48)])
    endpoint.reset_counts()
    tasks = [
        lock_task("holder with parentheses", run_id="run-1", holder="ctl-1 (pid 7)"),
        lock_task("no holder", run_id="run-1"),
        lock_task("ttl zero", run_id="run-1", holder="ctl-1", ttl_s=0),
        lock_task("empty run id", run_id="", holder="ctl-1"),
        lock_task("empty users", user_names=[], run_id="run-1", holder="ctl-1"),
        lock_task("missing user", user_names=[user, "no-such-user-q"], run_id="run-1", holder="ctl-1"),
        lock_task("too many tags", user_names=[user, full], run_id="run-1", holder="ctl-1"),
    ]
    run = run_playbook(play(endpoint, [dict(t, ignore_errors=True) for t in tasks], users=[user]))
    assert run.rc == 0, run.stdout
    assert [run.task(t["name"])["status"] for t in tasks] == ["ignored"] * len(tasks)
    msg = {t["name"]: run.task(t["name"])["result"]["msg"] for t in tasks}
    assert msg == {
        "holder with parentheses": "holder 'ctl-1 (pid 7)' holds '(', ')', which IAM does not allow in a tag value: "
                                   "expected letters, digits, spaces and _.:/=+-@",
        "no holder": "state is locked but all of the following are missing: holder",
        "ttl zero": "ttl_s=0 is not valid: expected seconds the lock lasts, 1 to 604800 (7 days)",
        "empty run id": "run_id is empty: expected a non-empty value",
        "empty users": "user_names is empty: expected at least one IAM user name",
        "missing user": "IAM user 'no-such-user-q' does not exist",
        "too many tags": f"IAM user '{full}' has 48 tags and rekey.aws needs 3 more (rekey:lock-run, "
                         "rekey:lock-holder, rekey:lock-until); IAM allows at most 50 tags per user. Remove tags the "
                         "user no longer needs and run again. Nothing was written for any user.",
    }
    assert endpoint.write_counts() == {}
    assert aws_lock(endpoint, user) is None and aws_lock(endpoint, full) is None
    assert_clean(run)


def failing_fourth_call_seed(endpoint, calls=6, fail_at=3, rate=0.5):
    """A seed for which, at this error rate, only the call at index fail_at of the next `calls` AWS
    calls gets HTTP 500 (the endpoint's random faults are reproducible from their seed)."""
    probe = endpoint.iam(endpoint.access_key_id, endpoint.secret_access_key, out_of_band=False)
    for seed in range(2000):
        endpoint.set_faults(seed=seed, error_rate=rate)
        pattern = []
        for _call in range(calls):
            try:
                probe.get_user(UserName="rekey-admin")
                pattern.append(True)
            except botocore.exceptions.ClientError:
                pattern.append(False)
        if pattern == [i != fail_at for i in range(calls)]:
            return seed
    raise AssertionError("no seed gives that fault pattern")


def test_a_failed_write_releases_the_locks_this_task_took(endpoint):
    first, second = sorted([endpoint.new_user("partial"), endpoint.new_user("partial")])
    seed = failing_fourth_call_seed(endpoint)
    endpoint.set_faults(seed=seed, error_rate=0.5)
    endpoint.reset_counts()
    # Calls: ListUserTags x2, TagUser first, TagUser second (HTTP 500, not retried), then the release:
    # ListUserTags first, UntagUser first.
    run = run_playbook(play(endpoint, [dict(lock_task("lock", run_id="run-1", holder="ctl-1", retries=0),
                                            ignore_errors=True)], users=[first, second]))
    endpoint.clear_faults()
    result = run.task("lock")["result"]
    assert result["msg"] == ("iam:TagUser failed with HTTP 500 InternalFailure after 1 attempts: We encountered an "
                             f"internal error. Please try again. The locks this task took on {first} were released.")
    assert (result["action"], result["changed"]) == ("iam:TagUser", True)
    assert endpoint.counts() == {"iam:ListUserTags": 3, "iam:TagUser": 2, "iam:UntagUser": 1}
    assert aws_lock(endpoint, first) is None and aws_lock(endpoint, second) is None
    assert_clean(run)


def test_a_rotation_locks_renews_and_unlocks_with_one_call_each_and_the_state_in_it(endpoint):
    """The options the rotation uses (issue 10): the lock decided on rotation_state_info's read
    (known) with the state written in the same TagUser, no read-back; renewed while held
    (held_until) with one TagUser; released with its state (clear_state_of) in one UntagUser. The
    user's other tags are kept; a lock another run holds, seen in known, refuses without a call."""
    user = endpoint.new_user("lockrec")
    endpoint.iam().tag_user(UserName=user, Tags=[{"Key": "team", "Value": "payments"}])
    mine = {"run_id": "run-7", "holder": "ctl-1 pid 7", "ttl_s": 600}
    record = [{"user_name": user, "phase": "planned", "old_key_id": "AKIAIOSFODNN7EXAMPLE"}]
    run = run_playbook(play(endpoint, [
        {"name": "read", "rekey.aws.rotation_state_info": {"user_names": ["{{ users[0] }}"]}, "register": "read"},
        {"name": "count", "ansible.builtin.uri": {"url": endpoint.control_url + "/counts/reset", "method": "POST",
                                                  "body_format": "json", "body": {}}},
        lock_task("lock", known="{{ read.rotations }}", read_back=False, record=record, **mine),
    ], users=[user]))
    assert run.rc == 0, run.stdout + run.stderr
    assert endpoint.counts() == {"iam:TagUser": 1}
    until = run.task("lock")["result"]["locks"][0]["until"]
    tags = aws_tags(endpoint, user)
    assert tags["rekey:lock-run"] == "run-7" and tags["rekey:lock-until"] == until and tags["team"] == "payments"
    assert (tags["rekey:run"], tags["rekey:phase"], tags["rekey:old"], tags["rekey:new"]) == (
        "run-7", "planned", "AKIAIOSFODNN7EXAMPLE", "")

    endpoint.reset_counts()
    time.sleep(1.1)
    renewed = run_playbook(play(endpoint, [
        dict(lock_task("renew", held_until=until, read_back=False, record=[dict(record[0], phase="distributed")],
                       **mine), register="renewed"),
        {"name": "between", "rekey.aws.rotation_state_info": {"user_names": ["{{ users[0] }}"]}, "register": "between"},
        lock_task("unlock", run_id="run-7", state="unlocked", held_until="{{ renewed.locks[0].until }}",
                  clear_state_of=[user]),
    ], users=[user]))
    assert renewed.rc == 0, renewed.stdout + renewed.stderr
    # One TagUser to renew, one read out of the module under test's way, one UntagUser to release.
    assert endpoint.counts() == {"iam:TagUser": 1, "iam:ListUserTags": 1, "iam:UntagUser": 1}
    between = renewed.task("between")["result"]["rotations"][user]
    assert between["phase"] == "distributed" and between["lock"]["until"] > until
    assert aws_tags(endpoint, user) == {"team": "payments"}

    put_lock(endpoint, user, "run-8", "ctl-2 pid 9", iso_in(600))
    endpoint.reset_counts()
    refused = run_playbook(play(endpoint, [
        {"name": "read", "rekey.aws.rotation_state_info": {"user_names": ["{{ users[0] }}"]}, "register": "read"},
        {"name": "count", "ansible.builtin.uri": {"url": endpoint.control_url + "/counts/reset", "method": "POST",
                                                  "body_format": "json", "body": {}}},
        dict(lock_task("lock", known="{{ read.rotations }}", read_back=False, check_permissions=True, **mine),
             ignore_errors=True),
    ], users=[user]))
    result = refused.task("lock")
    assert result["status"] == "ignored" and "is locked by run run-8" in result["result"]["msg"], result
    assert endpoint.counts() == {}
