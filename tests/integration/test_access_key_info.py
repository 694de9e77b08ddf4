"""rekey.aws.access_key_info through real ansible-playbook runs against the strict endpoint.

Expected keys are read out of band with the endpoint's admin client.
"""
from __future__ import annotations

import datetime

import botocore.exceptions

from tests.support.ansible_run import local_play, run_playbook

MODULE = "rekey.aws.access_key_info"
SHAPE = {"access_key_id", "user_name", "status", "create_date", "age_days", "last_used_date", "last_used_service",
         "last_used_region"}


def info_task(name, **args):
    return {"name": name, MODULE: args}


def ids(result):
    return [k["access_key_id"] for k in result["result"]["access_keys"]]


def test_lists_one_user_a_list_or_every_user_with_filters(endpoint):
    iam = endpoint.iam()
    alice, bob = endpoint.new_user("info-a"), endpoint.new_user("info-b")
    created = {}
    for user in (alice, alice, bob):
        key = iam.create_access_key(UserName=user)["AccessKey"]
        created.setdefault(user, []).append((key["AccessKeyId"], key["SecretAccessKey"], key["CreateDate"]))
    (a_old, a_old_secret, a_old_date), a_new = created[alice][0], created[alice][1][0]
    b_key = created[bob][0][0]
    iam.update_access_key(UserName=alice, AccessKeyId=a_new, Status="Inactive")
    endpoint.sts(a_old, a_old_secret).get_caller_identity()  # a_old gets a last use
    endpoint.reset_counts()

    tasks = [
        info_task("one user", user_name=alice),
        info_task("a list", user_names=[bob, alice, bob]),
        info_task("every user", all_users=True),
        info_task("only inactive", user_names=[alice, bob], status="Inactive"),
        info_task("at least a day old", user_names=[alice, bob], min_age_days=1),
        info_task("at least 0 days old", user_names=[alice, bob], min_age_days=0, status="Active"),
    ]
    defaults = {"group/rekey.aws.aws": endpoint.connection_args()}
    for check in (True, False):  # the same answers in check mode and out of it
        run = run_playbook(local_play(tasks, module_defaults=defaults), check=check)
        assert run.rc == 0, run.stdout
        assert not run.changed
        assert ids(run.task("one user")) == [a_old, a_new]
        assert ids(run.task("a list")) == [a_old, a_new, b_key]
        every = [k for k in run.task("every user")["result"]["access_keys"] if k["user_name"] in (alice, bob)]
        assert [k["access_key_id"] for k in every] == [a_old, a_new, b_key]
        assert ids(run.task("only inactive")) == [a_new]
        assert ids(run.task("at least a day old")) == []
        assert ids(run.task("at least 0 days old")) == [a_old, b_key]

    assert endpoint.write_counts() == {}
    old = run.task("one user")["result"]["access_keys"][0]
    assert set(old) == SHAPE
    assert old["user_name"] == alice and old["status"] == "Active" and old["age_days"] == 0
    assert old["create_date"] == a_old_date.astimezone(datetime.timezone.utc).replace(microsecond=0).isoformat()
    assert old["last_used_service"] == "sts" and old["last_used_region"] == "us-east-1"
    assert datetime.datetime.fromisoformat(old["last_used_date"]) >= datetime.datetime.fromisoformat(
        old["create_date"])
    never = run.task("one user")["result"]["access_keys"][1]
    assert (never["status"], never["last_used_date"], never["last_used_service"], never["last_used_region"]) == (
        "Inactive", None, None, None)


def test_a_missing_user_fails_naming_it(endpoint):
    real = endpoint.new_user("info-real")
    run = run_playbook(local_play([
        dict(info_task("missing", user_name="ghost-user-1"), ignore_errors=True),
        dict(info_task("missing in list", user_names=[real, "ghost-user-2"]), ignore_errors=True),
    ], module_defaults={"group/rekey.aws.aws": endpoint.connection_args()}))
    assert run.rc == 0, run.stdout
    assert run.task("missing")["result"]["msg"] == "IAM user 'ghost-user-1' does not exist"
    assert run.task("missing in list")["result"]["msg"] == "IAM user 'ghost-user-2' does not exist"
    assert "Traceback" not in run.stdout + run.stderr


def test_succeeds_under_30_percent_throttling(endpoint):
    user = endpoint.new_user("info-throttle")
    key_ids = [endpoint.iam().create_access_key(UserName=user)["AccessKey"]["AccessKeyId"] for _key in range(2)]
    endpoint.set_faults(throttle_rate=0.3, seed=11)
    probe = endpoint.sts(endpoint.access_key_id, endpoint.secret_access_key, out_of_band=False)
    throttled = 0
    for _attempt in range(20):
        try:
            probe.get_caller_identity()
        except botocore.exceptions.ClientError as exc:
            throttled += exc.response["Error"]["Code"] == "Throttling"
    assert throttled > 0, "throttling is not active"

    run = run_playbook(local_play([info_task("one user", user_name=user), info_task("every user", all_users=True)],
                                  module_defaults={"group/rekey.aws.aws": endpoint.connection_args()}))
    assert run.rc == 0, run.stdout
    assert ids(run.task("one user")) == key_ids
    assert set(key_ids) <= set(ids(run.task("every user")))
