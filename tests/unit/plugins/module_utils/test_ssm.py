"""Parameter Store names and error messages (pure logic). The calls themselves run against the
local endpoint in the integration tests of the key store and the ssm_parameter consumer."""
import sys

import botocore.exceptions
import pytest

from tests.support.ansible_run import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.rekey.aws.plugins.module_utils import _ssm  # noqa: E402


@pytest.mark.parametrize("name", ["/rekey/app", "app-key", "/a", "/prod/app_1/aws.key", "/" + "/".join(["l"] * 15)])
def test_good_names_pass(name):
    assert _ssm.parameter_name_problem(name) is None


@pytest.mark.parametrize("name, expected", [
    ("", "non-empty string"),
    (None, "non-empty string"),
    ("/rekey/app key", "only letters, digits and _.-/"),
    ("/rekey//app", "empty level"),
    ("/rekey/app/", "empty level"),
    ("rekey/app", "does not start with /"),
    ("/" + "/".join(["l"] * 16), "16 levels: at most 15"),
    ("/aws/app", "reserves"),
    ("SSMkey", "reserves"),
    ("/" + "x" * 1011, "1012 characters long"),
])
def test_bad_names_say_what_is_wrong_and_what_is_expected(name, expected):
    problem = _ssm.parameter_name_problem(name)
    assert problem is not None and expected in problem, problem


class _Client:
    def __init__(self, code, message="nope"):
        self.error = botocore.exceptions.ClientError({"Error": {"Code": code, "Message": message}}, "Op")
        self.calls = []

    def __getattr__(self, method):
        def call(**kwargs):
            self.calls.append((method, kwargs))
            raise self.error
        return call


def test_a_missing_parameter_is_none_or_false_not_an_error():
    assert _ssm.get_parameter(_Client("ParameterNotFound"), "/rekey/app") is None
    assert _ssm.delete_parameter(_Client("ParameterNotFound"), "/rekey/app") is False


@pytest.mark.parametrize("code, message, hint", [
    ("AccessDeniedException", "not authorized", "needs ssm:PutParameter"),
    ("KMSAccessDeniedException", "kms denied", "kms:Encrypt and kms:Decrypt"),
    ("ValidationException", "bad", ""),
])
def test_errors_name_action_parameter_and_never_the_value(code, message, hint):
    client = _Client(code, message)
    with pytest.raises(_ssm.SsmError) as caught:
        _ssm.put_secure_string(client, "/rekey/app", "s3cr3t-value", kms_key_id="alias/k", tags={"a": "b"})
    text = str(caught.value)
    assert "ssm:PutParameter on parameter '/rekey/app' failed: %s" % code in text and hint in text
    assert "s3cr3t-value" not in text
    (method, kwargs), = client.calls
    assert kwargs["Type"] == "SecureString" and kwargs["KeyId"] == "alias/k" and kwargs["Overwrite"] is True
    assert "Tags" not in kwargs  # AWS refuses tags with Overwrite


def test_tags_are_sent_when_creating():
    client = _Client("AccessDeniedException")
    with pytest.raises(_ssm.SsmError):
        _ssm.put_secure_string(client, "/rekey/app", "v", tags={"b": "2", "a": "1"}, overwrite=False)
    assert client.calls[0][1]["Tags"] == [{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}]
