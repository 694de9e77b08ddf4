"""rekey.aws.access_key through real ansible-playbook runs against the strict endpoint.

IAM state is checked out of band with the endpoint's admin client; whether a key works is checked
with an STS call signed by that key. Each rule: check mode, apply, check-mode idempotence,
idempotence (tasks with check_mode: true inside one play), and the endpoint's write counts prove
that check mode and the idempotent runs wrote nothing.
"""
from __future__ import annotations

import json
import stat

import botocore.exceptions
import pytest

from tests.support.ansible_run import local_play, run_playbook

MODULE = "rekey.aws.access_key"


def key_task(name, check_mode=False, **args):
    task = {"name": name, MODULE: dict({"user_name": "{{ user }}"}, **args),
            "register": name.replace(" ", "_").replace("(", "").replace(")", "")}
    if check_mode:
        task["check_mode"] = True
    return task


def keep_result(var, path):
    """Test-only: write a registered result holding a secret to a 0600 file, never to output."""
    return {"name": "keep " + var, "ansible.builtin.copy": {"content": "{{ %s | to_json }}" % var, "dest": str(path),
                                                            "mode": "0600"}, "no_log": True}


def aws_keys(endpoint, user):
    return {k["AccessKeyId"]: k["Status"] for k in endpoint.iam().list_access_keys(UserName=user)["AccessKeyMetadata"]}


def sts_error(endpoint, key_id, secret):
    """None when the key authenticates, else the error code STS answered with."""
    try:
        endpoint.sts(key_id, secret).get_caller_identity()
    except botocore.exceptions.ClientError as exc:
        return exc.response["Error"]["Code"]
    return None


def out_of_band_key(endpoint, user):
    key = endpoint.iam().create_access_key(UserName=user)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def assert_no_traceback(run):
    assert "Traceback" not in run.stdout + run.stderr
    assert "MODULE FAILURE" not in run.stdout


def test_present_creates_once_and_the_identical_rerun_writes_nothing(endpoint, tmp_path):
    user = endpoint.new_user("present")
    kept = tmp_path / "created.json"
    run = run_playbook(local_play([
        key_task("create check", check_mode=True),
        dict(key_task("create"), no_log=True),
        keep_result("create", kept),
        key_task("create again check", check_mode=True),
    ], vars={"user": user}, module_defaults={"group/rekey.aws.aws": endpoint.connection_args()}),
        diff=True, args=["-vvv"])
    assert run.rc == 0, run.stdout + run.stderr
    assert endpoint.write_counts() == {"iam:CreateAccessKey": 1}

    predicted = run.task("create check")["result"]
    assert (predicted["changed"], predicted["created"], predicted["access_key"], predicted["access_keys"]) == (
        True, True, None, [])
    assert predicted["diff"] == {"before": {"access_keys": []}, "after": {"access_keys": [
        {"access_key_id": "(created on apply)", "user_name": user, "status": "Active"}]}}

    created = json.loads(kept.read_text())
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    key_id, secret = created["access_key"]["access_key_id"], created["secret_access_key"]
    assert (created["changed"], created["created"]) == (True, True)
    assert created["access_key"]["user_name"] == user and created["access_key"]["status"] == "Active"
    assert created["access_key"]["age_days"] == 0 and created["access_key"]["last_used_date"] is None
    assert created["access_keys"] == [created["access_key"]]
    assert aws_keys(endpoint, user) == {key_id: "Active"}
    assert sts_error(endpoint, key_id, secret) is None
    assert "ESTABLISH LOCAL CONNECTION" in run.stdout and key_id in run.stdout  # -vvv, with results shown
    assert secret not in run.stdout + run.stderr, "the secret reached ansible-playbook's -vvv output"
    assert run.task("create")["result"].get("censored")

    again = run.task("create again check")["result"]
    assert (again["changed"], again["created"], again["access_key"]["access_key_id"]) == (False, False, key_id)
    assert "secret_access_key" not in again

    endpoint.reset_counts()
    rerun = run_playbook(local_play([key_task("create again")], vars={"user": user},
                                    module_defaults={"group/rekey.aws.aws": endpoint.connection_args()}))
    assert rerun.rc == 0, rerun.stdout
    result = rerun.task("create again")["result"]
    assert (result["changed"], result["created"], result["access_key"]["access_key_id"]) == (False, False, key_id)
    assert "secret_access_key" not in result
    assert endpoint.write_counts() == {}
    assert set(endpoint.counts()) == {"iam:ListAccessKeys", "iam:GetAccessKeyLastUsed"}


def test_max_age_days_creates_when_the_active_key_is_too_old(endpoint, tmp_path):
    user = endpoint.new_user("maxage")
    old_id = out_of_band_key(endpoint, user)[0]
    kept = tmp_path / "rotated.json"
    run = run_playbook(local_play([
        key_task("young enough", max_age_days=1),
        dict(key_task("too old", max_age_days=0), no_log=True),
        keep_result("too_old", kept),
    ], vars={"user": user}, module_defaults={"group/rekey.aws.aws": endpoint.connection_args()}))
    assert run.rc == 0, run.stdout
    young = run.task("young enough")["result"]
    assert (young["changed"], young["access_key"]["access_key_id"]) == (False, old_id)
    rotated = json.loads(kept.read_text())
    new_id = rotated["access_key"]["access_key_id"]
    assert rotated["created"] and new_id != old_id
    assert [k["access_key_id"] for k in rotated["access_keys"]] == [old_id, new_id]
    assert aws_keys(endpoint, user) == {old_id: "Active", new_id: "Active"}


def test_inactive_key_is_refused_and_works_again_once_reactivated(endpoint):
    user = endpoint.new_user("status")
    key_id, secret = out_of_band_key(endpoint, user)
    assert sts_error(endpoint, key_id, secret) is None
    common = {"vars": {"user": user, "key_id": key_id},
              "module_defaults": {"group/rekey.aws.aws": endpoint.connection_args()}}

    def status_tasks(state):
        return [key_task(f"{state} check", check_mode=True, id="{{ key_id }}", state=state),
                key_task(state, id="{{ key_id }}", state=state),
                key_task(f"{state} again check", check_mode=True, id="{{ key_id }}", state=state),
                key_task(f"{state} again", id="{{ key_id }}", state=state)]

    run = run_playbook(local_play(status_tasks("inactive"), **common), diff=True)
    assert run.rc == 0, run.stdout
    assert [run.task(n)["changed"] for n in ("inactive check", "inactive", "inactive again check", "inactive again")] \
        == [True, True, False, False]
    assert endpoint.write_counts() == {"iam:UpdateAccessKey": 1}
    changed = run.task("inactive")["result"]
    assert changed["access_key"]["status"] == "Inactive" and changed["created"] is False
    assert [k["status"] for k in changed["diff"]["before"]["access_keys"]] == ["Active"]
    assert [k["status"] for k in changed["diff"]["after"]["access_keys"]] == ["Inactive"]
    assert aws_keys(endpoint, user) == {key_id: "Inactive"}
    assert sts_error(endpoint, key_id, secret) == "InvalidClientTokenId"

    endpoint.reset_counts()
    run = run_playbook(local_play(status_tasks("active"), **common))
    assert run.rc == 0, run.stdout
    assert [run.task(n)["changed"] for n in ("active check", "active", "active again check", "active again")] \
        == [True, True, False, False]
    assert endpoint.write_counts() == {"iam:UpdateAccessKey": 1}
    assert aws_keys(endpoint, user) == {key_id: "Active"}
    assert sts_error(endpoint, key_id, secret) is None


def test_absent_deletes_only_an_inactive_key_and_a_deleted_key_is_refused(endpoint):
    user = endpoint.new_user("absent")
    key_id, secret = out_of_band_key(endpoint, user)
    run = run_playbook(local_play([
        dict(key_task("delete while active", id="{{ key_id }}", state="absent"), ignore_errors=True),
        key_task("deactivate", id="{{ key_id }}", state="inactive"),
        key_task("delete check", check_mode=True, id="{{ key_id }}", state="absent"),
        key_task("delete", id="{{ key_id }}", state="absent"),
        key_task("delete again check", check_mode=True, id="{{ key_id }}", state="absent"),
        key_task("delete again", id="{{ key_id }}", state="absent"),
    ], vars={"user": user, "key_id": key_id}, module_defaults={"group/rekey.aws.aws": endpoint.connection_args()}))
    assert run.rc == 0, run.stdout
    refused = run.task("delete while active")
    assert refused["status"] == "ignored"
    assert refused["result"]["msg"] == (
        f"access key '{key_id}' of IAM user '{user}' is Active: deactivate it first (state=inactive), make sure "
        "nothing still uses it, then delete it")
    assert [run.task(n)["changed"] for n in ("delete check", "delete", "delete again check", "delete again")] \
        == [True, True, False, False]
    deleted = run.task("delete")["result"]
    assert deleted["access_key"]["access_key_id"] == key_id and deleted["access_keys"] == []
    assert run.task("delete again")["result"]["access_key"] is None
    assert endpoint.write_counts() == {"iam:UpdateAccessKey": 1, "iam:DeleteAccessKey": 1}
    assert aws_keys(endpoint, user) == {}
    assert sts_error(endpoint, key_id, secret) == "InvalidClientTokenId"
    assert_no_traceback(run)


def test_a_third_key_fails_naming_both_keys_and_writes_nothing(endpoint):
    user = endpoint.new_user("full")
    used_id, used_secret = out_of_band_key(endpoint, user)
    spare_id = out_of_band_key(endpoint, user)[0]
    endpoint.iam().update_access_key(UserName=user, AccessKeyId=spare_id, Status="Inactive")
    assert sts_error(endpoint, used_id, used_secret) is None  # gives the key a last use
    endpoint.reset_counts()

    run = run_playbook(local_play([key_task("third key", max_age_days=0)], vars={"user": user},
                                  module_defaults={"group/rekey.aws.aws": endpoint.connection_args()}))
    assert run.rc != 0
    result = run.task("third key")
    assert result["status"] == "failed"
    message = result["result"]["msg"]
    assert message.startswith(f"IAM user '{user}' already has 2 access keys, the most AWS allows, and a new one "
                              "must be created: ")
    assert f"{used_id} (Active, created " in message and ", last used " in message and "(sts/us-east-1)" in message
    assert f"{spare_id} (Inactive, created " in message and "never used)" in message
    assert [k["access_key_id"] for k in result["result"]["access_keys"]] == [used_id, spare_id]
    assert endpoint.write_counts() == {}
    assert aws_keys(endpoint, user) == {used_id: "Active", spare_id: "Inactive"}
    assert_no_traceback(run)


def test_clear_errors_for_missing_user_bad_credentials_bad_id_and_denied_action(endpoint):
    user = endpoint.new_user("errors")
    admin = endpoint.connection_args()
    # A second admin whose policy lets it read keys but not create them.
    reader = endpoint.new_user("reader")
    endpoint.iam().put_user_policy(UserName=reader, PolicyName="read-keys", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*", "Action": [
            "iam:ListAccessKeys", "iam:GetAccessKeyLastUsed"]}]}))
    reader_id, reader_secret = out_of_band_key(endpoint, reader)
    endpoint.reset_counts()
    tasks = [
        {"name": "missing user", MODULE: dict(admin, user_name="no-such-user-x")},
        {"name": "wrong secret", MODULE: dict(admin, user_name=user, secret_key="not-the-secret")},
        {"name": "unknown key", MODULE: dict(admin, user_name=user, access_key="AKIANOSUCHKEY0000000")},
        {"name": "malformed id", MODULE: dict(admin, user_name=user, id="xyz", state="inactive")},
        {"name": "denied", MODULE: dict(admin, user_name=user, access_key=reader_id, secret_key=reader_secret)},
    ]
    run = run_playbook(local_play([dict(t, ignore_errors=True) for t in tasks]))
    assert run.rc == 0, run.stdout
    messages = {t["name"]: run.task(t["name"])["result"]["msg"] for t in tasks}
    assert [run.task(t["name"])["status"] for t in tasks] == ["ignored"] * len(tasks)
    assert messages["missing user"] == "IAM user 'no-such-user-x' does not exist"
    assert messages["wrong secret"].startswith(
        f"AWS refused the credentials this module used (access key {admin['access_key']} from the "
        "access_key/secret_key options) on iam:ListAccessKeys: SignatureDoesNotMatch: ")
    assert messages["unknown key"].startswith(
        "AWS refused the credentials this module used (access key AKIANOSUCHKEY0000000 from the "
        "access_key/secret_key options) on iam:ListAccessKeys: InvalidClientTokenId: ")
    assert messages["malformed id"] == (
        "id 'xyz' is not an access key id: expected 16-128 upper-case letters and digits")
    assert messages["denied"].startswith(
        f"access denied: the module's credentials may not call iam:CreateAccessKey on IAM user '{user}': ")
    assert run.task("denied")["result"]["error_code"] == "AccessDenied"
    assert endpoint.write_counts() == {"iam:CreateAccessKey": 1}  # the denied attempt, refused by IAM
    assert aws_keys(endpoint, user) == {}
    assert "not-the-secret" not in run.stdout + run.stderr and reader_secret not in run.stdout + run.stderr
    assert_no_traceback(run)


def test_wrong_credentials_from_the_environment_are_named(endpoint):
    user = endpoint.new_user("envcreds")
    run = run_playbook(local_play([{"name": "env credentials", "ignore_errors": True, MODULE: {
        "user_name": user, "endpoint_url": endpoint.endpoint_url, "region": endpoint.region}}]),
        env={"AWS_ACCESS_KEY_ID": endpoint.access_key_id, "AWS_SECRET_ACCESS_KEY": "wrong/secret"})
    message = run.task("env credentials")["result"]["msg"]
    assert message.startswith(
        f"AWS refused the credentials this module used (access key {endpoint.access_key_id} from the "
        "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY environment variables")
    assert "SignatureDoesNotMatch" in message
    assert_no_traceback(run)


@pytest.mark.parametrize("fault", [{"throttle_rate": 0.3}, {"error_rate": 0.3}])
def test_every_step_succeeds_under_30_percent_faults(endpoint, tmp_path, fault):
    user = endpoint.new_user("faults")
    endpoint.set_faults(seed=7, **fault)
    probe = endpoint.iam(endpoint.access_key_id, endpoint.secret_access_key, out_of_band=False)
    failures = 0
    for _attempt in range(20):
        try:
            probe.list_users(MaxItems=1)
        except botocore.exceptions.ClientError:
            failures += 1
    assert failures > 0, "the fault is not active"

    run = run_playbook(local_play([
        dict(key_task("create"), no_log=True),
        key_task("create again"),
        key_task("deactivate", id="{{ create.access_key.access_key_id }}", state="inactive"),
        key_task("reactivate", id="{{ create.access_key.access_key_id }}", state="active"),
        {"name": "list", "rekey.aws.access_key_info": {"user_name": "{{ user }}"}, "register": "listed"},
    ], vars={"user": user}, module_defaults={"group/rekey.aws.aws": endpoint.connection_args()}))
    assert run.rc == 0, run.stdout
    assert [r["status"] for r in run.results] == ["ok"] * 5
    assert run.task("create again")["changed"] is False
    assert len(run.task("list")["result"]["access_keys"]) == 1
    assert list(aws_keys(endpoint, user).values()) == ["Active"]
