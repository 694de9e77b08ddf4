"""botocore errors -> IamError with a message a user can act on; STS answers -> outcomes."""
import sys

import botocore.exceptions
import pytest

from tests.support.ansible_run import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.rekey.aws.plugins.module_utils._iam import IamError, caller_identity, map_error  # noqa: E402


def client_error(code, message="detail from AWS", status=400, operation="CreateAccessKey", retries=0):
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": message},
         "ResponseMetadata": {"HTTPStatusCode": status, "RetryAttempts": retries}}, operation)


def test_missing_user():
    error = map_error(client_error("NoSuchEntity", "The user with name ghost cannot be found.", 404),
                      "iam:ListAccessKeys", user_name="ghost")
    assert isinstance(error, IamError)
    assert (error.message, error.code, error.action) == ("IAM user 'ghost' does not exist", "NoSuchEntity",
                                                         "iam:ListAccessKeys")
    assert str(error) == error.message


def test_missing_key():
    error = map_error(client_error("NoSuchEntity", "no key", 404), "iam:UpdateAccessKey", user_name="app",
                      key_id="AKIAIOSFODNN7EXAMPLE")
    assert error.message == ("access key 'AKIAIOSFODNN7EXAMPLE' does not exist for IAM user 'app' "
                             "(iam:UpdateAccessKey: no key)")


@pytest.mark.parametrize("code", ["InvalidClientTokenId", "SignatureDoesNotMatch", "ExpiredToken"])
def test_refused_credentials_say_where_they_came_from(code):
    asked = []

    def source():
        asked.append(True)
        return "access key AKIAADMIN00000000000 from the access_key/secret_key options"

    error = map_error(client_error(code, "The security token included in the request is invalid.", 403),
                      "iam:ListAccessKeys", user_name="app", credentials=source)
    assert error.code == code and asked
    assert error.message == (
        "AWS refused the credentials this module used (access key AKIAADMIN00000000000 from the "
        "access_key/secret_key options) on iam:ListAccessKeys: %s: The security token included in the "
        "request is invalid. Check the module's access_key/secret_key/session_token/profile options and the "
        "AWS_* environment variables." % code)


def test_access_denied_names_the_action_and_user():
    error = map_error(client_error("AccessDenied", "User: arn:aws:iam::1:user/ops is not authorized", 403),
                      "iam:CreateAccessKey", user_name="app")
    assert error.message == ("access denied: the module's credentials may not call iam:CreateAccessKey on IAM "
                             "user 'app': User: arn:aws:iam::1:user/ops is not authorized")


def test_limit_exceeded():
    error = map_error(client_error("LimitExceeded", "Cannot exceed quota for AccessKeysPerUser: 2", 409),
                      "iam:CreateAccessKey", user_name="app")
    assert error.message == ("iam:CreateAccessKey for IAM user 'app' failed: LimitExceeded: Cannot exceed quota "
                             "for AccessKeysPerUser: 2")


def test_throttling_after_retries_says_how_many_attempts():
    error = map_error(client_error("Throttling", "Rate exceeded", 400, retries=9), "iam:ListAccessKeys")
    assert error.message == ("iam:ListAccessKeys was still throttled after 10 attempts (Throttling): raise the "
                             "retries option or run fewer calls at once")


def test_server_error():
    error = map_error(client_error("InternalFailure", "boom", 500, retries=2), "iam:ListUsers")
    assert error.message == "iam:ListUsers failed with HTTP 500 InternalFailure after 3 attempts: boom"


def test_other_client_errors_keep_code_and_message():
    error = map_error(client_error("ValidationError", "bad value", 400), "iam:ListUsers")
    assert (error.code, error.message) == ("ValidationError", "iam:ListUsers failed: ValidationError: bad value")


def test_no_credentials():
    error = map_error(botocore.exceptions.NoCredentialsError(), "iam:ListAccessKeys")
    assert error.code == "NoCredentialsError"
    assert error.message.startswith("iam:ListAccessKeys: no AWS credentials found: set access_key and secret_key")


def test_profile_not_found():
    error = map_error(botocore.exceptions.ProfileNotFound(profile="nope"), "iam:connect")
    assert error.message == ("iam:connect: The config profile (nope) could not be found: check the profile option "
                             "or AWS_PROFILE")


def test_endpoint_unreachable():
    error = map_error(botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:9/"),
                      "iam:ListUsers")
    assert (error.code, error.message) == (
        "EndpointConnectionError",
        'iam:ListUsers: could not connect to AWS: Could not connect to the endpoint URL: "http://127.0.0.1:9/"')


class FakeSts:
    def __init__(self, exc=None):
        self.exc = exc

    def get_caller_identity(self):
        if self.exc:
            raise self.exc
        return {"Arn": "arn:aws:iam::123456789012:user/app", "Account": "123456789012", "UserId": "AIDA"}


@pytest.mark.parametrize("exc,expected", [
    (None, ("authenticated", "arn:aws:iam::123456789012:user/app")),
    (client_error("InvalidClientTokenId", status=403, operation="GetCallerIdentity"),
     ("refused", "InvalidClientTokenId")),
    (client_error("SignatureDoesNotMatch", status=403, operation="GetCallerIdentity"),
     ("refused", "SignatureDoesNotMatch")),
    (client_error("Throttling", status=400, operation="GetCallerIdentity"), ("inconclusive", "Throttling")),
    (client_error("InternalFailure", status=500, operation="GetCallerIdentity"),
     ("inconclusive", "InternalFailure")),
    (botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:9/"),
     ("inconclusive", "EndpointConnectionError")),
])
def test_caller_identity_outcomes(exc, expected):
    assert caller_identity(FakeSts(exc)) == expected
