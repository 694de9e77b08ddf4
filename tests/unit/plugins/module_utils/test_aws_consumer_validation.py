"""Validation of the consumers whose key is held in AWS (formats ssm_parameter and
secretsmanager_secret), table-driven: names, field names, KMS key, shared targets."""
import pytest

from rotation_fixtures import consumer

from ansible_collections.rekey.aws.plugins.module_utils import _consumers

WHERE = 'host web1, consumer "app" (rotate_consumers[0])'


def ssm(**fields):
    c = consumer(**dict({"format": "ssm_parameter", "parameter": "/app/aws-key"}, **fields))
    del c["path"]
    return c


def secret(**fields):
    c = consumer(**dict({"format": "secretsmanager_secret", "secret_id": "app/aws-key"}, **fields))
    del c["path"]
    return c


def problems(*consumers):
    return _consumers.consumer_problems("web1", list(consumers), "/inv", lambda path: False)


CASES = [
    ("ssm_valid_without_path", ssm(), []),
    ("ssm_kms_key", ssm(kms_key_id="alias/app"), []),
    ("ssm_plain_name", ssm(parameter="app-key"), []),
    ("ssm_missing_name", ssm(parameter=""),
     [WHERE + ": format ssm_parameter needs parameter: parameter name '': expected a non-empty string such as "
              "/rekey/app"]),
    ("ssm_reserved_name", ssm(parameter="/aws/key"),
     [WHERE + ": format ssm_parameter needs parameter: parameter name '/aws/key' starts with aws or ssm, which AWS "
              "reserves: choose another first level"]),
    ("ssm_bad_characters", ssm(parameter="/app/my key"),
     [WHERE + ": format ssm_parameter needs parameter: parameter name '/app/my key': expected only letters, digits "
              "and _.-/"]),
    ("ssm_levels_without_slash", ssm(parameter="app/key"),
     [WHERE + ": format ssm_parameter needs parameter: parameter name 'app/key' has levels but does not start with "
              "/: expected /app/key"]),
    ("secret_valid", secret(), []),
    ("secret_arn", secret(secret_id="arn:aws:secretsmanager:us-east-1:123456789012:secret:app/aws-key-AbCdEf"), []),
    ("secret_bad_name", secret(secret_id="app key"),
     [WHERE + ': format secretsmanager_secret needs secret_id: "app key" is not a secret name or ARN (expected 1 to '
              '512 letters, digits or /_+=.@-)']),
    ("secret_missing_name", secret(secret_id=None),
     [WHERE + ": format secretsmanager_secret needs secret_id: null is not a secret name or ARN (expected 1 to 512 "
              "letters, digits or /_+=.@-)"]),
    ("secret_kms_refused", secret(kms_key_id="alias/app"),
     [WHERE + ": kms_key_id applies to format ssm_parameter only: a secret keeps the KMS key it was created with"]),
    ("custom_fields", secret(access_key_id_field="AccessKeyId", secret_access_key_field="SecretAccessKey"), []),
    ("same_fields", ssm(access_key_id_field="key", secret_access_key_field="key"),
     [WHERE + ': access_key_id_field and secret_access_key_field are both "key": expected two different field names']),
    ("empty_field", secret(access_key_id_field=" "),
     [WHERE + ': access_key_id_field " " is not valid: expected a JSON field name of 1 to 256 characters']),
    ("field_not_a_string", ssm(secret_access_key_field=7),
     [WHERE + ": secret_access_key_field 7 is not valid: expected a JSON field name of 1 to 256 characters"]),
    ("apply_and_health_still_checked", ssm(service="", health_url=""),
     [WHERE + ": apply restart needs service: expected the service name",
      WHERE + ": no health check: expected health_url, health_command or both"]),
    ("file_format_still_needs_path", consumer(path=None),
     [WHERE + ": path null is not an absolute path on the host"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_aws_consumer_problems(case):
    _id, c, expected = case
    assert problems(c) == expected


@pytest.mark.parametrize("c, expected", [
    (ssm(), True), (secret(), True), (consumer(), False), (consumer(format="env"), False)])
def test_held_in_aws(c, expected):
    assert _consumers.held_in_aws(_consumers.with_defaults(c)) is expected


def hostvars(**per_host):
    return dict((h, {"rotate_consumers": cs}) for h, cs in per_host.items())


SHARED_CASES = [
    ("same_everywhere", hostvars(web1=[ssm()], web2=[ssm(name="other")]), []),
    ("other_parameter_other_user", hostvars(web1=[ssm()], web2=[ssm(parameter="/b", user="b")]), []),
    ("same_name_across_formats_is_not_shared", hostvars(web1=[ssm(parameter="k")], web2=[secret(secret_id="k", user="b")]),
     []),
    ("user_differs", hostvars(web1=[ssm()], web2=[ssm(user="other")]),
     ['host web2, consumer "app" (rotate_consumers[0]): ssm_parameter "/app/aws-key" holds iam_user "other", but '
      'host web1, consumer "app" (rotate_consumers[0]) says "app": consumers sharing a parameter must agree']),
    ("field_differs", hostvars(web1=[secret()], web2=[secret(access_key_id_field="id")]),
     ['host web2, consumer "app" (rotate_consumers[0]): secretsmanager_secret "app/aws-key" holds access_key_id_field '
      '"id", but host web1, consumer "app" (rotate_consumers[0]) says "aws_access_key_id": consumers sharing a secret '
      'must agree']),
    ("files_ignored", hostvars(web1=[consumer()], web2=[consumer(user="b")]), []),
]


@pytest.mark.parametrize("case", SHARED_CASES, ids=[c[0] for c in SHARED_CASES])
def test_shared_target_problems(case):
    _id, hv, expected = case
    assert _consumers.shared_target_problems(sorted(hv), hv) == expected
