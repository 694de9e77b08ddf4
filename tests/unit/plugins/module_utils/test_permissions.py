"""The permission check run before the first write: pure parts table-driven, check() on a fake
IAM client that answers as IAM does (authorization before lookup)."""
import sys

import botocore.exceptions
import pytest

from tests.support.ansible_run import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.rekey.aws.plugins.module_utils import _permissions as perm  # noqa: E402
from ansible_collections.rekey.aws.plugins.module_utils._iam import IamError  # noqa: E402

METHOD_ACTION = {"update_access_key": "iam:UpdateAccessKey", "delete_access_key": "iam:DeleteAccessKey",
                 "untag_user": "iam:UntagUser"}


def client_error(code, operation, status=400):
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": "detail"}, "ResponseMetadata": {"HTTPStatusCode": status}}, operation)


class FakeIam:
    """Denies the actions in `denied` (per user when a dict), else answers like IAM: NoSuchEntity
    for an unknown key id or user, success for UntagUser."""

    def __init__(self, denied=(), users=("app",), keys=(), other=None):
        self.denied, self.users, self.keys, self.other, self.calls = denied, set(users), set(keys), other, []

    def _answer(self, method, kwargs):
        self.calls.append((method, kwargs))
        action = METHOD_ACTION[method]
        denied = self.denied.get(kwargs["UserName"], ()) if isinstance(self.denied, dict) else self.denied
        if action in denied:
            raise client_error("AccessDenied", method, 403)
        if self.other:
            raise self.other
        if kwargs["UserName"] not in self.users:
            raise client_error("NoSuchEntity", method, 404)
        if "AccessKeyId" in kwargs and kwargs["AccessKeyId"] not in self.keys:
            raise client_error("NoSuchEntity", method, 404)
        return {}

    def __getattr__(self, method):
        if method not in METHOD_ACTION:
            raise AttributeError(method)
        return lambda **kwargs: self._answer(method, kwargs)


def test_required_actions_per_backend():
    assert perm.required_actions() == sorted(perm.ROTATE_ACTIONS)
    assert perm.required_actions("vault_file", audit_all_users=True) == sorted(perm.ROTATE_ACTIONS + ("iam:ListUsers",))
    assert perm.required_actions("secretsmanager") == sorted(perm.ROTATE_ACTIONS + perm.SECRETSMANAGER_ACTIONS)
    assert "iam:GetUser" not in perm.required_actions("secretsmanager", True)
    assert perm.required_actions("ssm") == sorted(perm.ROTATE_ACTIONS + (
        "ssm:GetParameter", "ssm:PutParameter", "ssm:DeleteParameter"))
    with pytest.raises(ValueError, match="'dynamodb': expected one of secretsmanager, ssm, vault_file"):
        perm.required_actions("dynamodb")


def test_the_impossible_key_id_cannot_be_issued():
    key_id = perm.IMPOSSIBLE_KEY_ID
    assert len(key_id) == 20 and key_id.startswith("AKIA")
    assert set(key_id[4:]) - set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")


def test_probe_calls_cover_each_user_once_with_its_name():
    calls = perm.probe_calls(["b", "a", "b"])
    assert [(a, k["UserName"]) for a, _m, k, _g in calls] == [
        ("iam:UpdateAccessKey", "a"), ("iam:DeleteAccessKey", "a"), ("iam:UntagUser", "a"),
        ("iam:UpdateAccessKey", "b"), ("iam:DeleteAccessKey", "b"), ("iam:UntagUser", "b")]
    assert all(k.get("AccessKeyId", perm.IMPOSSIBLE_KEY_ID) == perm.IMPOSSIBLE_KEY_ID for _a, _m, k, _g in calls)
    assert perm.probe_calls([]) == []


def test_the_lock_probes_only_the_key_writes_within_the_call_budget():
    """Two probes per user: with the rotation's 10 calls, 12 (issue 10); iam:UntagUser is not probed
    by the lock (it only releases the lock and clears the state, after the keys are settled)."""
    calls = perm.probe_calls(["a"], perm.LOCK_PROBES)
    assert [a for a, _m, _k, _g in calls] == ["iam:UpdateAccessKey", "iam:DeleteAccessKey"]
    assert set(perm.LOCK_PROBES) <= set(a for a, _m, _k, _g in perm.PROBES)


@pytest.mark.parametrize("code, granted, verdict", [
    ("NoSuchEntity", ("NoSuchEntity",), "granted"),
    (None, (None,), "granted"),
    ("AccessDenied", ("NoSuchEntity",), "denied"),
    ("AccessDeniedException", (None,), "denied"),
    ("UnauthorizedOperation", (None,), "denied"),
    ("NoSuchEntity", (None,), "inconclusive"),
    ("Throttling", ("NoSuchEntity",), "inconclusive"),
    (None, ("NoSuchEntity",), "inconclusive"),
])
def test_judge(code, granted, verdict):
    assert perm.judge(code, granted) == verdict


def test_refusal_message_names_each_action_and_user_and_says_nothing_changed():
    summary = perm.summarize([("iam:UpdateAccessKey", "b", "denied"), ("iam:UpdateAccessKey", "a", "denied"),
                              ("iam:UntagUser", "a", "denied"), ("iam:DeleteAccessKey", "a", "granted")])
    assert summary == {"denied": {"iam:UntagUser": ["a"], "iam:UpdateAccessKey": ["a", "b"]}, "ok": False}
    assert perm.refusal_message(summary) == (
        "Nothing was changed: the credentials may not call iam:UntagUser (IAM user 'a'); iam:UpdateAccessKey "
        "(IAM users 'a', 'b'). Grant every action of docs/iam-policy.json (rekey.aws's least-privilege policy) "
        "and run again.")
    assert perm.refusal_message(perm.summarize([("iam:UntagUser", "a", "granted")])) is None


def test_check_all_granted():
    fake = FakeIam(users=("app", "web"))
    assert perm.check(fake, ["web", "app"]) == {"denied": {}, "ok": True}
    assert len(fake.calls) == 6


@pytest.mark.parametrize("missing", ["iam:UpdateAccessKey", "iam:DeleteAccessKey", "iam:UntagUser"])
def test_check_finds_each_missing_action(missing):
    summary = perm.check(FakeIam(denied=(missing,)), ["app"])
    assert summary == {"denied": {missing: ["app"]}, "ok": False}
    assert missing in perm.refusal_message(summary)


def test_check_per_user_resource_scope():
    fake = FakeIam(denied={"db": ("iam:DeleteAccessKey",)}, users=("web", "db"))
    assert perm.check(fake, ["web", "db"])["denied"] == {"iam:DeleteAccessKey": ["db"]}


def test_missing_user_is_an_error_not_a_verdict():
    with pytest.raises(IamError, match="IAM user 'ghost' does not exist"):
        perm.check(FakeIam(), ["ghost"])


def test_throttled_past_retries_is_an_error_not_a_verdict():
    with pytest.raises(IamError) as caught:
        perm.check(FakeIam(other=client_error("Throttling", "UpdateAccessKey")), ["app"])
    assert caught.value.code == "Throttling" and caught.value.action == "iam:UpdateAccessKey"


def test_a_probe_that_succeeds_where_it_cannot_is_not_trusted():
    fake = FakeIam(keys=(perm.IMPOSSIBLE_KEY_ID,))
    with pytest.raises(IamError, match="cannot be trusted"):
        perm.check(fake, ["app"])


def test_network_error_is_an_iam_error():
    with pytest.raises(IamError) as caught:
        perm.check(FakeIam(other=botocore.exceptions.EndpointConnectionError(endpoint_url="http://x")), ["app"])
    assert caught.value.action == "iam:UpdateAccessKey"
