"""The strict IAM/STS endpoint refuses keys as AWS does, and its faults and counts work.

Real HTTP with boto3 against tools/iam_endpoint.py.
"""
import json
import os
import signal
import stat
import threading
import time
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError

from tests.support.endpoint import EndpointError, read_log, start_endpoint, stop_endpoint

INVALID_TOKEN = (403, "InvalidClientTokenId")
ALLOW_IAM = json.dumps({"Version": "2012-10-17",
                        "Statement": [{"Effect": "Allow", "Action": "iam:*", "Resource": "*"}]})


def error_of(call, *args, **kwargs):
    """(HTTP status, error code) of a call that must fail."""
    with pytest.raises(ClientError) as caught:
        call(*args, **kwargs)
    response = caught.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def new_key(endpoint, *, allow_iam=False):
    """A fresh user (optionally allowed iam:*) and one key: (user, key id, secret)."""
    user = endpoint.new_user("ep")
    if allow_iam:
        endpoint.iam().put_user_policy(UserName=user, PolicyName="iam", PolicyDocument=ALLOW_IAM)
    key = endpoint.iam().create_access_key(UserName=user)["AccessKey"]
    return user, key["AccessKeyId"], key["SecretAccessKey"]


def caller_arn(endpoint, key_id, secret):
    return endpoint.sts(key_id, secret).get_caller_identity()["Arn"]


def test_active_key_authenticates_on_sts_and_iam(endpoint):
    user, key_id, secret = new_key(endpoint, allow_iam=True)

    assert caller_arn(endpoint, key_id, secret) == f"arn:aws:iam::{endpoint.account_id}:user/{user}"
    keys = endpoint.iam(key_id, secret).list_access_keys(UserName=user)["AccessKeyMetadata"]
    assert [k["AccessKeyId"] for k in keys] == [key_id]


def test_user_without_policies_may_call_sts_but_not_write_iam(endpoint):
    user, key_id, secret = new_key(endpoint)

    assert caller_arn(endpoint, key_id, secret).endswith(f":user/{user}")
    with pytest.raises(ClientError) as caught:
        endpoint.iam(key_id, secret).create_access_key(UserName=user)
    assert caught.value.response["Error"]["Code"] == "AccessDenied"
    assert "iam:CreateAccessKey" in caught.value.response["Error"]["Message"]
    assert len(endpoint.iam().list_access_keys(UserName=user)["AccessKeyMetadata"]) == 1


def test_inactive_key_is_refused_and_works_again_once_reactivated(endpoint):
    user, key_id, secret = new_key(endpoint, allow_iam=True)
    endpoint.iam().update_access_key(UserName=user, AccessKeyId=key_id, Status="Inactive")

    assert error_of(endpoint.sts(key_id, secret).get_caller_identity) == INVALID_TOKEN
    assert error_of(endpoint.iam(key_id, secret).list_access_keys, UserName=user) == INVALID_TOKEN
    assert error_of(endpoint.secretsmanager(key_id, secret).list_secrets) == (403, "UnrecognizedClientException")

    endpoint.iam().update_access_key(UserName=user, AccessKeyId=key_id, Status="Active")
    assert caller_arn(endpoint, key_id, secret).endswith(f":user/{user}")
    endpoint.iam(key_id, secret).list_access_keys(UserName=user)


def test_deleted_key_is_refused(endpoint):
    user, key_id, secret = new_key(endpoint, allow_iam=True)
    caller_arn(endpoint, key_id, secret)
    endpoint.iam().update_access_key(UserName=user, AccessKeyId=key_id, Status="Inactive")
    endpoint.iam().delete_access_key(UserName=user, AccessKeyId=key_id)

    assert error_of(endpoint.sts(key_id, secret).get_caller_identity) == INVALID_TOKEN
    assert error_of(endpoint.iam(key_id, secret).list_users) == INVALID_TOKEN


def test_made_up_key_is_refused(endpoint):
    made_up = endpoint.sts("AKIA" + "Z" * 16, "x" * 40)
    assert error_of(made_up.get_caller_identity) == INVALID_TOKEN


def test_wrong_secret_gets_signature_does_not_match(endpoint):
    _user, key_id, secret = new_key(endpoint, allow_iam=True)
    wrong = secret[:-1] + ("a" if secret[-1] != "a" else "b")

    assert error_of(endpoint.sts(key_id, wrong).get_caller_identity) == (403, "SignatureDoesNotMatch")
    assert error_of(endpoint.iam(key_id, wrong).list_users) == (403, "SignatureDoesNotMatch")


def test_last_used_advances_only_for_authenticated_requests(endpoint):
    user, key_id, secret = new_key(endpoint)
    caller_arn(endpoint, key_id, secret)
    used = endpoint.iam().get_access_key_last_used(AccessKeyId=key_id)["AccessKeyLastUsed"]
    assert used["ServiceName"] == "sts"

    time.sleep(0.01)
    error_of(endpoint.sts(key_id, "x" * 40).get_caller_identity)
    endpoint.iam().update_access_key(UserName=user, AccessKeyId=key_id, Status="Inactive")
    error_of(endpoint.sts(key_id, secret).get_caller_identity)

    after = endpoint.iam().get_access_key_last_used(AccessKeyId=key_id)["AccessKeyLastUsed"]
    assert after["LastUsedDate"] == used["LastUsedDate"]


def test_propagation_delay_refuses_a_new_key_for_that_long(endpoint):
    _user, old_id, old_secret = new_key(endpoint)
    endpoint.set_faults(propagation_delay_s=2)
    user = endpoint.new_user("ep")
    created = time.monotonic()
    key = endpoint.iam().create_access_key(UserName=user)["AccessKey"]
    sts = endpoint.sts(key["AccessKeyId"], key["SecretAccessKey"])

    refusals = 0
    while True:
        try:
            sts.get_caller_identity()
            break
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "InvalidClientTokenId"
            refusals += 1
            assert time.monotonic() - created < 5, "the key was still refused after 5 s"
            time.sleep(0.1)
    waited = time.monotonic() - created

    assert refusals >= 10
    assert 1.9 <= waited < 3.0
    assert caller_arn(endpoint, old_id, old_secret), "a key created before the delay was set is not held"


def test_refuse_key_ids_refuses_that_key_only(endpoint):
    _user, key_id, secret = new_key(endpoint)
    _user, other_id, other_secret = new_key(endpoint)
    endpoint.set_faults(refuse_key_ids=[key_id])

    assert error_of(endpoint.sts(key_id, secret).get_caller_identity) == INVALID_TOKEN
    caller_arn(endpoint, other_id, other_secret)

    endpoint.clear_faults()
    caller_arn(endpoint, key_id, secret)


def test_throttling_is_aws_shaped_retried_by_botocore_and_spares_out_of_band(endpoint):
    _user, key_id, secret = new_key(endpoint)
    endpoint.set_faults(throttle_rate=1.0)

    assert error_of(endpoint.sts(key_id, secret).get_caller_identity) == (400, "Throttling")
    assert error_of(endpoint.secretsmanager(key_id, secret).list_secrets) == (400, "ThrottlingException")
    assert endpoint.sts().get_caller_identity()["Arn"].endswith(":user/rekey-admin")
    assert endpoint.counts() == {"sts:GetCallerIdentity": 1, "secretsmanager:ListSecrets": 1}

    endpoint.reset_counts()
    error_of(endpoint.sts(key_id, secret, max_attempts=2).get_caller_identity)
    assert endpoint.counts() == {"sts:GetCallerIdentity": 2}, "botocore's standard mode did not retry"


def test_error_rate_gives_internal_failure_500_which_botocore_retries(endpoint):
    _user, key_id, secret = new_key(endpoint, allow_iam=True)
    endpoint.set_faults(error_rate=1.0)

    assert error_of(endpoint.iam(key_id, secret).list_users) == (500, "InternalFailure")
    error_of(endpoint.sts(key_id, secret, max_attempts=2).get_caller_identity)
    assert endpoint.counts() == {"iam:ListUsers": 1, "sts:GetCallerIdentity": 2}
    assert endpoint.iam().list_users()["Users"], "out-of-band requests are never faulted"


def test_rates_follow_the_seed(endpoint):
    _user, key_id, secret = new_key(endpoint)
    sts = endpoint.sts(key_id, secret)

    def outcomes():
        endpoint.set_faults(throttle_rate=0.5, seed=7)
        seen = []
        for _attempt in range(20):
            try:
                sts.get_caller_identity()
                seen.append("ok")
            except ClientError as exc:
                seen.append(exc.response["Error"]["Code"])
        return seen

    first = outcomes()
    assert set(first) == {"ok", "Throttling"}
    assert outcomes() == first


def test_counts_count_every_in_band_request_and_reset(endpoint):
    user, key_id, secret = new_key(endpoint, allow_iam=True)
    iam = endpoint.iam(key_id, secret)
    iam.list_access_keys(UserName=user)
    iam.tag_user(UserName=user, Tags=[{"Key": "k", "Value": "v"}])
    iam.untag_user(UserName=user, TagKeys=["k"])
    endpoint.sts(key_id, secret).get_caller_identity()
    error_of(endpoint.sts(key_id, "x" * 40).get_caller_identity)
    endpoint.iam().list_users()

    assert endpoint.counts() == {"iam:ListAccessKeys": 1, "iam:TagUser": 1, "iam:UntagUser": 1,
                                 "sts:GetCallerIdentity": 2}
    assert endpoint.write_counts() == {"iam:TagUser": 1, "iam:UntagUser": 1}
    endpoint.reset_counts()
    assert endpoint.counts() == {}


def test_concurrent_requests_are_all_answered_and_counted(endpoint):
    _user, key_id, secret = new_key(endpoint)
    failures = []

    def call_sts():
        sts = endpoint.sts(key_id, secret)
        for _attempt in range(25):
            try:
                sts.get_caller_identity()
            except ClientError as exc:
                failures.append(exc.response["Error"]["Code"])

    threads = [threading.Thread(target=call_sts) for _attempt in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    assert endpoint.counts() == {"sts:GetCallerIdentity": 200}


def test_control_api_rejects_bad_faults_by_name(endpoint):
    with pytest.raises(EndpointError, match=r"throttle_rate must be a number from 0 to 1, got 1\.5"):
        endpoint.set_faults(throttle_rate=1.5)
    with pytest.raises(EndpointError, match=r"unknown fault\(s\) \['throttle'\]"):
        endpoint.set_faults(throttle=1)
    with pytest.raises(EndpointError, match=r"refuse_key_ids must be a list"):
        endpoint.set_faults(refuse_key_ids="AKIAEXAMPLE")
    assert endpoint.faults() == {"propagation_delay_s": 0.0, "throttle_rate": 0.0, "error_rate": 0.0,
                                 "refuse_key_ids": [], "seed": None}


def test_moto_api_is_closed(endpoint):
    request = urllib.request.Request(endpoint.endpoint_url + "/moto-api/reset-auth", data=b"inf",
                                     method="POST")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 404
    error_of(endpoint.sts("AKIA" + "Z" * 16, "x" * 40).get_caller_identity)


def test_state_file_is_private_and_sigterm_stops_cleanly(tmp_path):
    state_file = tmp_path / "state.json"
    proc, endpoint = start_endpoint("127.0.0.1", 0, state_file)
    try:
        assert stat.S_IMODE(os.stat(state_file).st_mode) == 0o600
        state = json.loads(state_file.read_text())
        assert set(state) == {"endpoint_url", "region", "access_key_id", "secret_access_key",
                              "account_id", "control_url"}
        assert state["control_url"] == state["endpoint_url"] + "/_rekey"
        assert endpoint.sts().get_caller_identity()["Account"] == "123456789012"
        assert state["secret_access_key"] not in repr(endpoint)

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        stop_endpoint(proc)
    log = read_log(proc)
    assert "Traceback" not in log
    assert state["secret_access_key"] not in log
    assert not state_file.exists()


def test_start_endpoint_reports_a_failed_start_with_its_output(tmp_path):
    with pytest.raises(EndpointError, match=r"(?s)exited with 2; its output:.*cannot bind 192\.0\.2\.1:0"):
        start_endpoint("192.0.2.1", 0, tmp_path / "state.json")
