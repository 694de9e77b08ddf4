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
NO_FAULTS = {"propagation_delay_s": 0.0, "throttle_rate": 0.0, "error_rate": 0.0, "refuse_key_ids": [],
             "seed": None, "fault_scope": "all", "error_burst": 0, "fail_actions": {}, "propagation_flap": []}
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
    assert endpoint.faulted_counts() == {"sts:GetCallerIdentity": {"Throttling": 1},
                                         "secretsmanager:ListSecrets": {"Throttling": 1}}

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
    assert endpoint.faults() == NO_FAULTS


@pytest.mark.parametrize("faults, message", [
    ({"fault_scope": "fleet"}, r"fault_scope must be one of \['all', 'controller'\], got 'fleet'"),
    ({"error_burst": -1}, r"error_burst must be a whole number >= 0, got -1"),
    ({"error_burst": 2.5}, r"error_burst must be a whole number >= 0, got 2\.5"),
    ({"fail_actions": ["iam:CreateAccessKey"]}, r"fail_actions must be an object of action -> error"),
    ({"fail_actions": {"CreateAccessKey": {"code": "LimitExceeded"}}},
     r"fail_actions: 'CreateAccessKey' is not an action: expected service:Action"),
    ({"fail_actions": {"iam:CreateAccessKey": {"status": 409}}},
     r"fail_actions\['iam:CreateAccessKey'\]\.code must be an AWS error code such as LimitExceeded, got None"),
    ({"fail_actions": {"iam:CreateAccessKey": {"code": "LimitExceeded", "status": 200}}},
     r"\.status must be an HTTP error status 400-599, got 200"),
    ({"fail_actions": {"iam:CreateAccessKey": {"code": "LimitExceeded", "count": 0}}},
     r"\.count must be a whole number >= 1, or null for every call; got 0"),
    ({"fail_actions": {"iam:CreateAccessKey": {"code": "LimitExceeded", "times": 2}}},
     r"unknown field\(s\) \['times'\]"),
    ({"fail_actions": {"iam:UntagUser": {"code": "AccessDenied", "delay_s": -1}}},
     r"fail_actions\['iam:UntagUser'\]\.delay_s must be a number of seconds >= 0, got -1"),
    ({"propagation_flap": [[0, "refuse"], [0, "accept"]]}, r"propagation_flap: 0 does not come after 0"),
    ({"propagation_flap": [[1, "maybe"]]}, r"propagation_flap: \[1, 'maybe'\] is not a change point"),
    ({"propagation_flap": [[-1, "refuse"]]}, r"propagation_flap: \[-1, 'refuse'\] is not a change point"),
    ({"propagation_flap": {"0": "refuse"}}, r"propagation_flap must be a list of \[seconds_from_creation"),
])
def test_control_api_rejects_bad_new_faults_by_name(endpoint, faults, message):
    with pytest.raises(EndpointError, match=message):
        endpoint.set_faults(**faults)
    assert endpoint.faults() == NO_FAULTS


def test_error_burst_fails_the_next_calls_then_passes(endpoint):
    user, key_id, secret = new_key(endpoint, allow_iam=True)
    endpoint.set_faults(error_burst=3)
    iam = endpoint.iam(key_id, secret)

    assert error_of(iam.list_access_keys, UserName=user) == (500, "InternalFailure")
    endpoint.iam().list_users()  # out of band: neither faulted nor part of the burst
    assert endpoint.faults()["error_burst"] == 2
    assert error_of(endpoint.sts(key_id, secret).get_caller_identity) == (500, "InternalFailure")
    assert error_of(iam.list_access_keys, UserName=user) == (500, "InternalFailure")
    assert [k["AccessKeyId"] for k in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]] == [key_id]
    assert endpoint.faults()["error_burst"] == 0
    assert endpoint.counts() == {"iam:ListAccessKeys": 3, "sts:GetCallerIdentity": 1}
    assert endpoint.faulted_counts() == {"iam:ListAccessKeys": {"InternalFailure": 2},
                                         "sts:GetCallerIdentity": {"InternalFailure": 1}}
    endpoint.reset_counts()
    assert endpoint.faulted_counts() == {}


def test_error_burst_is_retried_through_by_botocore(endpoint):
    _user, key_id, secret = new_key(endpoint)
    endpoint.set_faults(error_burst=3)
    assert endpoint.sts(key_id, secret, max_attempts=4).get_caller_identity()["Arn"]
    assert endpoint.counts() == {"sts:GetCallerIdentity": 4}


def test_fail_actions_answer_that_aws_error_count_times(endpoint):
    user, key_id, secret = new_key(endpoint, allow_iam=True)
    endpoint.set_faults(fail_actions={"iam:CreateAccessKey": {
        "code": "LimitExceeded", "status": 409, "message": "Cannot exceed quota for AccessKeysPerUser: 2"}})
    iam = endpoint.iam(key_id, secret)

    with pytest.raises(ClientError) as caught:
        iam.create_access_key(UserName=user)
    response = caught.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 409
    assert response["Error"] == {"Type": "Sender", "Code": "LimitExceeded",
                                 "Message": "Cannot exceed quota for AccessKeysPerUser: 2"}
    assert len(endpoint.iam().list_access_keys(UserName=user)["AccessKeyMetadata"]) == 1, "the fault created a key"
    iam.list_access_keys(UserName=user)  # another action is not affected
    assert endpoint.faults()["fail_actions"] == {}, "a used-up entry is removed"
    assert endpoint.faulted_counts() == {"iam:CreateAccessKey": {"LimitExceeded": 1}}
    iam.create_access_key(UserName=user)
    assert len(endpoint.iam().list_access_keys(UserName=user)["AccessKeyMetadata"]) == 2


def test_a_delayed_fail_action_hangs_then_fails_without_doing_the_action(endpoint):
    user, key_id, secret = new_key(endpoint, allow_iam=True)
    endpoint.iam().tag_user(UserName=user, Tags=[{"Key": "rekey:phase", "Value": "distributed"}])
    endpoint.set_faults(fail_actions={"iam:UntagUser": {"code": "AccessDenied", "status": 403, "delay_s": 1.5}})
    started = time.monotonic()
    assert error_of(lambda: endpoint.iam(key_id, secret).untag_user(UserName=user, TagKeys=["rekey:phase"])) == (
        403, "AccessDenied")
    assert time.monotonic() - started >= 1.5
    assert endpoint.iam().list_user_tags(UserName=user)["Tags"] == [{"Key": "rekey:phase", "Value": "distributed"}]


def test_fail_actions_count_null_fails_every_call_and_json_services_get_json(endpoint):
    _user, key_id, secret = new_key(endpoint)
    endpoint.set_faults(fail_actions={
        "sts:GetCallerIdentity": {"code": "InternalFailure", "status": 503, "count": None},
        "secretsmanager:ListSecrets": {"code": "InternalServiceError", "status": 500, "count": 2}})

    for _attempt in range(3):
        assert error_of(endpoint.sts(key_id, secret).get_caller_identity) == (503, "InternalFailure")
    with pytest.raises(ClientError) as caught:
        endpoint.secretsmanager(key_id, secret).list_secrets()
    assert caught.value.response["Error"] == {"Code": "InternalServiceError",
                                              "Message": "InternalServiceError (injected by the strict endpoint)"}
    assert endpoint.faults()["fail_actions"] == {
        "sts:GetCallerIdentity": {"code": "InternalFailure", "status": 503, "count": None,
                                  "message": "InternalFailure (injected by the strict endpoint)"},
        "secretsmanager:ListSecrets": {"code": "InternalServiceError", "status": 500, "count": 1,
                                       "message": "InternalServiceError (injected by the strict endpoint)"}}
    endpoint.clear_faults()
    assert caller_arn(endpoint, key_id, secret)


@pytest.mark.parametrize("remote_addr, expected", [
    ("127.0.0.1", True), ("127.0.0.53", True), ("::1", True), ("::ffff:127.0.0.1", True),
    ("10.231.8.1", True), ("10.231.8.11", False), ("192.0.2.1", False), ("", False), ("not-an-ip", False),
])
def test_fault_scope_controller_means_loopback_or_the_bind_address(remote_addr, expected):
    from tools.iam_endpoint import Counts, Faults, RekeyMiddleware
    middleware = RekeyMiddleware(None, Faults(), Counts(), controller_addresses=["10.231.8.1"])
    assert middleware.from_controller({"REMOTE_ADDR": remote_addr}) is expected


def test_fault_scope_controller_spares_other_callers():
    from tools.iam_endpoint import Faults
    faults = Faults()
    faults.update({"fault_scope": "controller", "throttle_rate": 1.0, "error_burst": 1,
                   "fail_actions": {"iam:ListUsers": {"code": "AccessDenied", "status": 403, "count": None}}})
    assert faults.draw("iam:ListUsers", from_controller=False) is None
    assert faults.draw("sts:GetCallerIdentity", from_controller=False) is None
    assert faults.snapshot()["error_burst"] == 1, "a spared call does not use up the burst"
    assert faults.draw("iam:ListUsers", from_controller=True)[1] == "InternalFailure"
    assert faults.draw("iam:ListUsers", from_controller=True)[1] == "AccessDenied"
    assert faults.draw("sts:GetCallerIdentity", from_controller=True)[1] == "Throttling"
    faults.update({"fault_scope": "all"})
    assert faults.draw("sts:GetCallerIdentity", from_controller=False)[1] == "Throttling"


def test_fault_scope_controller_still_faults_this_machine(endpoint):
    _user, key_id, secret = new_key(endpoint)
    endpoint.set_faults(fault_scope="controller", throttle_rate=1.0)
    assert error_of(endpoint.sts(key_id, secret).get_caller_identity) == (400, "Throttling")


def test_propagation_flap_accepts_refuses_then_accepts_a_new_key(endpoint):
    _user, old_id, old_secret = new_key(endpoint)
    flap = [[0, "refuse"], [0.8, "accept"], [1.6, "refuse"], [2.4, "accept"]]
    endpoint.set_faults(propagation_flap=flap)
    user = endpoint.new_user("ep")
    created = time.time()
    key = endpoint.iam().create_access_key(UserName=user)["AccessKey"]
    sts = endpoint.sts(key["AccessKeyId"], key["SecretAccessKey"])

    seen = []  # (seconds since creation, outcome)
    while time.time() - created < 3.2:
        try:
            sts.get_caller_identity()
            outcome = "accept"
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "InvalidClientTokenId"
            outcome = "refuse"
        seen.append((time.time() - created, outcome))
        time.sleep(0.05)

    runs = [outcome for i, (_t, outcome) in enumerate(seen) if i == 0 or seen[i - 1][1] != outcome]
    assert runs == ["refuse", "accept", "refuse", "accept"], seen
    changes = [t for i, (t, outcome) in enumerate(seen) if i and seen[i - 1][1] != outcome]
    for change, (at, _state) in zip(changes, flap[1:]):
        assert at <= change < at + 0.4, (changes, flap)
    [(key_id, scheduled)] = endpoint.scheduled_keys().items()
    assert key_id == key["AccessKeyId"] and scheduled["flap"] == [[float(t), s] for t, s in flap]
    assert scheduled["delay_s"] == 0.0 and created - 0.5 < scheduled["created_at"] < created + 0.5
    assert caller_arn(endpoint, old_id, old_secret), "a key created before the flap was set does not flap"

    endpoint.clear_faults()
    assert endpoint.scheduled_keys() == {}


def test_propagation_flap_ending_in_refuse_refuses_until_cleared(endpoint):
    endpoint.set_faults(propagation_flap=[[0.3, "refuse"]])
    user = endpoint.new_user("ep")
    key = endpoint.iam().create_access_key(UserName=user)["AccessKey"]
    sts = endpoint.sts(key["AccessKeyId"], key["SecretAccessKey"])
    assert caller_arn(endpoint, key["AccessKeyId"], key["SecretAccessKey"]), "accepted before the first point"
    time.sleep(0.4)
    endpoint.set_faults(propagation_flap=[])  # keys created before keep their schedule
    assert error_of(sts.get_caller_identity) == INVALID_TOKEN
    endpoint.clear_faults()
    assert caller_arn(endpoint, key["AccessKeyId"], key["SecretAccessKey"])


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
