"""rekey.aws.rotation_state and rotation_state_info through real ansible-playbook runs against the
strict endpoint. Tags are checked out of band with the endpoint's admin client; write counts prove
that check mode and idempotent runs wrote nothing."""
from __future__ import annotations

import json
import time

from tests.support.ansible_run import local_play, run_playbook

MODULE = "rekey.aws.rotation_state"
INFO = "rekey.aws.rotation_state_info"
OLD, NEW = "AKIAIOSFODNN7EXAMPLE", "AKIAI44QH8DHBEXAMPLE"


def state_task(name, check_mode=False, **args):
    task = {"name": name, MODULE: dict({"user_name": "{{ user }}"}, **args)}
    if check_mode:
        task["check_mode"] = True
    return task


def play(endpoint, tasks, **vars):
    return local_play(tasks, vars=vars, module_defaults={"group/rekey.aws.aws": endpoint.connection_args()})


def aws_tags(endpoint, user):
    return {t["Key"]: t["Value"] for t in endpoint.iam().list_user_tags(UserName=user)["Tags"]}


def rekey_tags(endpoint, user):
    return {k: v for k, v in aws_tags(endpoint, user).items() if k.startswith("rekey:")}


def assert_clean(run):
    assert "Traceback" not in run.stdout + run.stderr and "MODULE FAILURE" not in run.stdout


def test_present_rhythm_records_the_state_and_the_identical_rerun_writes_nothing(endpoint):
    user = endpoint.new_user("state")
    endpoint.iam().tag_user(UserName=user, Tags=[{"Key": "team", "Value": "payments"}])
    endpoint.reset_counts()
    planned = {"run_id": "run-1", "phase": "planned", "old_key_id": OLD}
    run = run_playbook(play(endpoint, [
        state_task("record check", check_mode=True, **planned),
        state_task("record", **planned),
        state_task("record again check", check_mode=True, **planned),
    ], user=user), diff=True)
    assert run.rc == 0, run.stdout + run.stderr
    assert [run.task(n)["changed"] for n in ("record check", "record", "record again check")] == [True, True, False]
    assert endpoint.write_counts() == {"iam:TagUser": 1}
    assert endpoint.counts() == {"iam:ListUserTags": 3, "iam:TagUser": 1}

    predicted = run.task("record check")["result"]
    assert predicted["previous"] is None
    assert predicted["diff"]["before"] == {"rotation": None}
    recorded = run.task("record")["result"]
    rotation = recorded["rotation"]
    assert {k: v for k, v in rotation.items() if k != "updated"} == {
        "run_id": "run-1", "phase": "planned", "old_key_id": OLD, "new_key_id": None}
    assert recorded["previous"] is None
    assert recorded["diff"] == {"before": {"rotation": None}, "after": {"rotation": rotation}}
    assert aws_tags(endpoint, user) == {"team": "payments", "rekey:run": "run-1", "rekey:phase": "planned",
                                        "rekey:old": OLD, "rekey:new": "", "rekey:updated": rotation["updated"]}
    assert run.task("record again check")["result"]["rotation"] == rotation

    time.sleep(1.1)  # a changed timestamp would now show
    endpoint.reset_counts()
    rerun = run_playbook(play(endpoint, [state_task("record again", **planned)], user=user))
    assert rerun.rc == 0, rerun.stdout
    again = rerun.task("record again")["result"]
    assert (again["changed"], again["rotation"], again["previous"]) == (False, rotation, rotation)
    assert endpoint.write_counts() == {}
    assert endpoint.counts() == {"iam:ListUserTags": 1}
    assert rekey_tags(endpoint, user)["rekey:updated"] == rotation["updated"]

    rerun = run_playbook(play(endpoint, [state_task("next phase", run_id="run-1", phase="key_created",
                                                    old_key_id=OLD, new_key_id=NEW)], user=user), diff=True)
    assert rerun.rc == 0, rerun.stdout
    moved = rerun.task("next phase")["result"]
    assert moved["changed"] and moved["previous"] == rotation
    assert moved["rotation"]["updated"] > rotation["updated"]
    assert moved["diff"]["before"] == {"rotation": rotation} and moved["diff"]["after"] == {"rotation": moved["rotation"]}
    assert rekey_tags(endpoint, user) == {"rekey:run": "run-1", "rekey:phase": "key_created", "rekey:old": OLD,
                                          "rekey:new": NEW, "rekey:updated": moved["rotation"]["updated"]}
    assert endpoint.write_counts() == {"iam:TagUser": 1}
    assert_clean(run)


def test_absent_removes_only_the_state_tags(endpoint):
    user = endpoint.new_user("absent")
    endpoint.iam().tag_user(UserName=user, Tags=[
        {"Key": "team", "Value": "payments"}, {"Key": "rekey:run", "Value": "run-1"},
        {"Key": "rekey:phase", "Value": "distributing"}, {"Key": "rekey:old", "Value": OLD},
        {"Key": "rekey:new", "Value": NEW}, {"Key": "rekey:updated", "Value": "2024-05-31T12:00:00+00:00"},
        {"Key": "rekey:lock-run", "Value": "run-1"}, {"Key": "rekey:lock-holder", "Value": "ctl-1 pid 7"},
        {"Key": "rekey:lock-until", "Value": "2099-01-01T00:00:00+00:00"}])
    endpoint.reset_counts()
    run = run_playbook(play(endpoint, [
        dict(state_task("someone else's", state="absent", run_id="run-2"), ignore_errors=True),
        state_task("clear check", check_mode=True, state="absent", run_id="run-1"),
        state_task("clear", state="absent", run_id="run-1"),
        state_task("clear again check", check_mode=True, state="absent", run_id="run-1"),
    ], user=user), diff=True)
    assert run.rc == 0, run.stdout
    refused = run.task("someone else's")
    assert refused["status"] == "ignored"
    assert refused["result"]["msg"] == (
        f"IAM user '{user}' holds the state of run run-1 (phase distributing), not of run run-2: left alone. "
        "Remove it without run_id if that run is over.")
    assert [run.task(n)["changed"] for n in ("clear check", "clear", "clear again check")] == [True, True, False]
    cleared = run.task("clear")["result"]
    assert cleared["rotation"] is None
    assert cleared["previous"] == {"run_id": "run-1", "phase": "distributing", "old_key_id": OLD, "new_key_id": NEW,
                                   "updated": "2024-05-31T12:00:00+00:00"}
    assert cleared["diff"] == {"before": {"rotation": cleared["previous"]}, "after": {"rotation": None}}
    assert endpoint.write_counts() == {"iam:UntagUser": 1}
    assert aws_tags(endpoint, user) == {"team": "payments", "rekey:lock-run": "run-1",
                                        "rekey:lock-holder": "ctl-1 pid 7", "rekey:lock-until": "2099-01-01T00:00:00+00:00"}

    endpoint.reset_counts()
    rerun = run_playbook(play(endpoint, [state_task("clear again", state="absent")], user=user))
    assert rerun.rc == 0, rerun.stdout
    assert rerun.task("clear again")["result"]["changed"] is False
    assert endpoint.write_counts() == {}
    assert_clean(run)


def test_clear_errors_before_any_write(endpoint):
    user = endpoint.new_user("errors")
    full = endpoint.new_user("full")
    endpoint.iam().tag_user(UserName=full, Tags=[{"Key": "t%02d" % i, "Value": ""} for i in range(48)])
    endpoint.reset_counts()
    present = {"run_id": "run-1", "phase": "planned"}
    tasks = [
        state_task("missing user", user_name="no-such-user-x", **present),
        state_task("bad key id", old_key_id="akia-not-a-key", **present),
        state_task("run id too long", run_id="r" * 257, phase="planned"),
        state_task("run id with a bad character", run_id="run #1", phase="planned"),
        state_task("unknown phase", run_id="run-1", phase="halfway"),
        state_task("no phase", run_id="run-1"),
        state_task("phase with absent", state="absent", phase="planned"),
        state_task("too many tags", user_name=full, **present),
    ]
    run = run_playbook(play(endpoint, [dict(t, ignore_errors=True) for t in tasks], user=user))
    assert run.rc == 0, run.stdout
    assert [run.task(t["name"])["status"] for t in tasks] == ["ignored"] * len(tasks)
    msg = {t["name"]: run.task(t["name"])["result"]["msg"] for t in tasks}
    assert msg["missing user"] == "IAM user 'no-such-user-x' does not exist"
    assert run.task("missing user")["result"]["action"] == "iam:ListUserTags"
    assert msg["bad key id"] == (
        "old_key_id 'akia-not-a-key' is not an access key id: expected 16-128 upper-case letters and digits")
    assert msg["run id too long"] == (
        "run_id is 257 characters long: IAM tag values hold at most 256 (%r...)" % ("r" * 40))
    assert msg["run id with a bad character"] == (
        "run_id 'run #1' holds '#', which IAM does not allow in a tag value: expected letters, digits, spaces "
        "and _.:/=+-@")
    assert msg["unknown phase"].startswith("value of phase must be one of: planned, key_created, key_stored, ")
    assert msg["unknown phase"].endswith("got: halfway")
    assert msg["no phase"] == "state is present but all of the following are missing: phase"
    assert msg["phase with absent"] == "phase is only used with state=present, not state=absent"
    assert msg["too many tags"] == (
        f"IAM user '{full}' has 48 tags and rekey.aws needs 5 more (rekey:run, rekey:phase, rekey:old, rekey:new, "
        "rekey:updated); IAM allows at most 50 tags per user. Remove tags the user no longer needs and run again.")
    assert endpoint.write_counts() == {}
    assert rekey_tags(endpoint, user) == {} and rekey_tags(endpoint, full) == {}
    assert_clean(run)


def test_denied_tag_user_names_the_action(endpoint):
    user = endpoint.new_user("denied")
    reader = endpoint.new_user("tagreader")
    endpoint.iam().put_user_policy(UserName=reader, PolicyName="read-tags", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*", "Action": ["iam:ListUserTags"]}]}))
    key = endpoint.iam().create_access_key(UserName=reader)["AccessKey"]
    creds = dict(endpoint.connection_args(), access_key=key["AccessKeyId"], secret_key=key["SecretAccessKey"])
    run = run_playbook(local_play([{"name": "denied", "ignore_errors": True, MODULE: dict(
        creds, user_name=user, run_id="run-1", phase="planned")}]))
    result = run.task("denied")["result"]
    assert result["msg"].startswith(f"access denied: the module's credentials may not call iam:TagUser on IAM user "
                                    f"'{user}': ")
    assert (result["error_code"], result["action"]) == ("AccessDenied", "iam:TagUser")
    assert rekey_tags(endpoint, user) == {}
    assert key["SecretAccessKey"] not in run.stdout + run.stderr
    assert_clean(run)


def test_state_info_returns_state_and_lock_per_user(endpoint):
    busy, idle, stale = endpoint.new_user("busy"), endpoint.new_user("idle"), endpoint.new_user("stale")
    endpoint.iam().tag_user(UserName=idle, Tags=[{"Key": "team", "Value": "payments"}])
    endpoint.iam().tag_user(UserName=stale, Tags=[
        {"Key": "rekey:lock-run", "Value": "run-0"}, {"Key": "rekey:lock-holder", "Value": "ctl-9 pid 1"},
        {"Key": "rekey:lock-until", "Value": "2020-01-01T00:00:00+00:00"}])
    run = run_playbook(play(endpoint, [
        state_task("record", user_name=busy, run_id="run-1", phase="distributing", old_key_id=OLD, new_key_id=NEW),
        {"name": "lock", "rekey.aws.rotation_lock": {"user_names": [busy], "run_id": "run-1", "holder": "ctl-1 pid 7"},
         "register": "locked"},
        {"name": "read", INFO: {"user_names": [stale, busy, idle, busy]}},
        {"name": "read in check mode", INFO: {"user_names": [busy]}, "check_mode": True},
        {"name": "missing user", INFO: {"user_names": [busy, "no-such-user-y"]}, "ignore_errors": True},
        {"name": "no users", INFO: {"user_names": []}, "ignore_errors": True},
    ]))
    assert run.rc == 0, run.stdout
    read = run.task("read")["result"]
    updated = run.task("record")["result"]["rotation"]["updated"]
    until = run.task("lock")["result"]["locks"][0]["until"]
    assert read["changed"] is False
    assert read["rotations"] == {
        busy: {"run_id": "run-1", "phase": "distributing", "old_key_id": OLD, "new_key_id": NEW, "updated": updated,
               "lock": {"run_id": "run-1", "holder": "ctl-1 pid 7", "until": until, "expired": False},
               "tag_keys": ["rekey:lock-holder", "rekey:lock-run", "rekey:lock-until", "rekey:new", "rekey:old",
                            "rekey:phase", "rekey:run", "rekey:updated"]},
        idle: {"run_id": None, "phase": None, "old_key_id": None, "new_key_id": None, "updated": None, "lock": None,
               "tag_keys": ["team"]},
        stale: {"run_id": None, "phase": None, "old_key_id": None, "new_key_id": None, "updated": None,
                "lock": {"run_id": "run-0", "holder": "ctl-9 pid 1", "until": "2020-01-01T00:00:00+00:00",
                         "expired": True},
                "tag_keys": ["rekey:lock-holder", "rekey:lock-run", "rekey:lock-until"]},
    }
    assert list(read["rotations"]) == sorted([busy, idle, stale])
    assert run.task("read in check mode")["result"]["rotations"][busy] == read["rotations"][busy]
    assert run.task("missing user")["result"]["msg"] == "IAM user 'no-such-user-y' does not exist"
    assert run.task("no users")["result"]["msg"] == "user_names is empty: expected at least one IAM user name"
    assert_clean(run)


def test_state_info_makes_one_call_per_user(endpoint):
    users = [endpoint.new_user("count") for _user in range(3)]
    endpoint.reset_counts()
    run = run_playbook(play(endpoint, [{"name": "read", INFO: {"user_names": users}}]))
    assert run.rc == 0, run.stdout
    assert endpoint.counts() == {"iam:ListUserTags": 3}
