"""rekey.aws.access_key_verify through real ansible-playbook runs against the strict endpoint.

The endpoint's faults make keys late (propagation delay), calls throttled, and keys refused;
key state is set out of band with the endpoint's admin client.
"""
from __future__ import annotations

import threading
import time

import botocore.exceptions

from tests.support.ansible_run import local_play, run_playbook

MODULE = "rekey.aws.access_key_verify"


def new_key(endpoint, user):
    key = endpoint.iam().create_access_key(UserName=user)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def verify_task(name, keys, **args):
    return {"name": name, MODULE: dict({"keys": keys, "interval": 0.5}, **args)}


def key_vars(*pairs):
    """Play vars carrying the keys, so no secret is written into the task itself."""
    return {f"k{i}": {"access_key_id": key_id, "secret_access_key": secret} for i, (key_id, secret) in enumerate(pairs)}


def test_waits_out_a_5_s_propagation_delay(endpoint):
    user = endpoint.new_user("verify-late")
    endpoint.set_faults(propagation_delay_s=5)
    probe = new_key(endpoint, endpoint.new_user("verify-probe"))
    try:
        endpoint.sts(*probe).get_caller_identity()
        raise AssertionError("the propagation delay is not active")
    except botocore.exceptions.ClientError as exc:
        assert exc.response["Error"]["Code"] == "InvalidClientTokenId"
    run = run_playbook(local_play([
        # Created right before the check, as a rotation does, so the delay is still running.
        {"name": "create", "rekey.aws.access_key": {"user_name": user}, "register": "new", "no_log": True},
        {"name": "late key", MODULE: {"consecutive": 3, "timeout": 60, "interval": 0.5, "keys": [
            {"access_key_id": "{{ new.access_key.access_key_id }}", "secret_access_key": "{{ new.secret_access_key }}"},
        ]}},
    ], module_defaults={"group/rekey.aws.aws": endpoint.connection_args()}))
    assert run.rc == 0, run.stdout
    result = run.task("late key")["result"]
    assert result["changed"] is False
    entry, = result["results"]
    assert entry["authenticated"] is True
    assert entry["arn"] == f"arn:aws:iam::{endpoint.account_id}:user/{user}"
    assert entry["attempts"] > 3, "never refused: the delay was over before the check started"
    assert entry["seconds"] >= 1.0


def test_all_keys_are_checked_at_the_same_time(endpoint):
    users = [endpoint.new_user("verify-many"), endpoint.new_user("verify-many")]
    pairs = [new_key(endpoint, user) for user in users]
    endpoint.set_faults(refuse_key_ids=[pair[0] for pair in pairs])

    def release_once_refused_a_while():
        # Once 6 refused calls arrived, let both keys in. Had the keys been checked one after
        # the other, the second would never have seen a refusal.
        deadline = time.monotonic() + 60
        while endpoint.counts().get("sts:GetCallerIdentity", 0) < 6 and time.monotonic() < deadline:
            time.sleep(0.1)
        endpoint.set_faults(refuse_key_ids=[])

    releaser = threading.Thread(target=release_once_refused_a_while, daemon=True)
    releaser.start()
    run = run_playbook(local_play([verify_task("both", ["{{ k0 }}", "{{ k1 }}"], consecutive=3, timeout=60)],
                                  vars=key_vars(*pairs),
                                  module_defaults={"group/rekey.aws.aws": endpoint.connection_args()}))
    releaser.join(timeout=60)
    assert run.rc == 0, run.stdout
    results = run.task("both")["result"]["results"]
    assert [r["authenticated"] for r in results] == [True, True]
    assert all(r["attempts"] > 3 for r in results), results


def test_expect_refused_waits_until_a_deactivated_key_is_refused(endpoint):
    user = endpoint.new_user("verify-off")
    key_id, secret = new_key(endpoint, user)
    run = run_playbook(local_play([
        dict(verify_task("works check", ["{{ k0 }}"], consecutive=2), check_mode=True),
        verify_task("works", ["{{ k0 }}"], consecutive=2),
        {"name": "deactivate", "rekey.aws.access_key": {"user_name": user, "id": key_id, "state": "inactive"}},
        verify_task("refused", ["{{ k0 }}"], expect="refused", consecutive=3),
        {"name": "reactivate", "rekey.aws.access_key": {"user_name": user, "id": key_id, "state": "active"}},
        verify_task("works again", ["{{ k0 }}"], consecutive=2),
    ], vars=key_vars((key_id, secret)), module_defaults={"group/rekey.aws.aws": endpoint.connection_args()}))
    assert run.rc == 0, run.stdout
    refused = run.task("refused")["result"]["results"][0]
    assert (refused["authenticated"], refused["arn"], refused["attempts"]) == (False, None, 3)
    assert run.task("works again")["result"]["results"][0]["authenticated"] is True
    checked = run.task("works check")["result"]  # check mode: the same read-only calls
    assert (checked["changed"], checked["results"][0]["authenticated"], checked["results"][0]["attempts"]) == (
        False, True, 2)
    assert endpoint.counts()["sts:GetCallerIdentity"] == 9


def test_timeout_names_the_key_and_last_error_never_the_secret_nor_the_admin_key(endpoint):
    user = endpoint.new_user("verify-bad")
    good_id, good_secret = new_key(endpoint, user)
    bogus_secret = "bogus/Secret+0000000000000000000000000000"
    # The admin key sits in the environment and in module_defaults: the module must use neither.
    run = run_playbook(local_play([
        dict(verify_task("unknown key", [
            {"access_key_id": "AKIANOSUCHKEY0000000", "secret_access_key": bogus_secret},
            "{{ k0 }}",
            {"access_key_id": good_id, "secret_access_key": bogus_secret},
        ], timeout=3, consecutive=2), ignore_errors=True),
    ], vars=key_vars((good_id, good_secret)), module_defaults={"group/rekey.aws.aws": endpoint.connection_args()}),
        env={"AWS_ACCESS_KEY_ID": endpoint.access_key_id, "AWS_SECRET_ACCESS_KEY": endpoint.secret_access_key},
        args=["-vvv"])
    result = run.task("unknown key")
    assert result["status"] == "ignored"
    assert result["result"]["msg"] == (
        "timed out after 3 s waiting for 2 key(s) to be authenticated 2 times in a row: "
        f"AKIANOSUCHKEY0000000 (last error InvalidClientTokenId, {result['result']['results'][0]['attempts']} "
        f"attempts); {good_id} (last error SignatureDoesNotMatch, {result['result']['results'][2]['attempts']} "
        "attempts)")
    assert [r["authenticated"] for r in result["result"]["results"]] == [False, True, False]
    everything = run.stdout + run.stderr
    assert "task path:" in everything  # the verbose output was written (the key is checked in-process)
    for secret in (bogus_secret, good_secret, endpoint.secret_access_key):
        assert secret not in everything
    assert "Traceback" not in everything


def test_expect_refused_times_out_on_a_key_that_still_works(endpoint):
    user = endpoint.new_user("verify-on")
    pair = new_key(endpoint, user)
    run = run_playbook(local_play([dict(verify_task("still works", ["{{ k0 }}"], expect="refused", timeout=2),
                                        ignore_errors=True)], vars=key_vars(pair),
                                  module_defaults={"group/rekey.aws.aws": endpoint.connection_args()}))
    result = run.task("still works")["result"]
    assert result["msg"].startswith(
        f"timed out after 2 s waiting for 1 key(s) to be refused 3 times in a row: {pair[0]} (still authenticated, ")


def test_succeeds_under_30_percent_throttling(endpoint):
    users = [endpoint.new_user("verify-throttle"), endpoint.new_user("verify-throttle")]
    pairs = [new_key(endpoint, user) for user in (users[0], users[0], users[1])]
    endpoint.set_faults(throttle_rate=0.3, seed=3)
    run = run_playbook(local_play([verify_task("throttled", ["{{ k0 }}", "{{ k1 }}", "{{ k2 }}"], consecutive=3,
                                               timeout=60, interval=0.2)],
                                  vars=key_vars(*pairs), module_defaults={"group/rekey.aws.aws":
                                                                          endpoint.connection_args()}))
    assert run.rc == 0, run.stdout
    results = run.task("throttled")["result"]["results"]
    assert all(r["authenticated"] for r in results)
    calls = endpoint.counts()["sts:GetCallerIdentity"]
    assert sum(r["attempts"] for r in results) == calls
    assert calls > 9, "no call was throttled: the fault is not active"
