"""Connection options -> argspec, sessions and clients (no AWS call is made here)."""
import sys

import pytest

from tests.support.ansible_run import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.rekey.aws.plugins.module_utils import _connection  # noqa: E402
from ansible_collections.rekey.aws.plugins.module_utils._iam import sts_for_key  # noqa: E402

AWS_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION",
           "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in AWS_ENV:
        monkeypatch.delenv(name, raising=False)
    # No shared files from the machine running the tests.
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def params(**overrides):
    base = {"access_key": None, "secret_key": None, "session_token": None, "profile": None,
            "region": "us-east-1", "endpoint_url": None, "validate_certs": True, "retries": 10}
    base.update(overrides)
    return base


def test_argspec_merges_module_options():
    spec = _connection.connection_argspec(user_name={"type": "str", "required": True})
    assert spec["user_name"] == {"type": "str", "required": True}
    assert spec["secret_key"]["no_log"] is True and spec["session_token"]["no_log"] is True
    assert spec["retries"] == {"type": "int", "default": 10}
    assert spec["region"]["default"] == "us-east-1"


def test_argspec_refuses_a_module_option_named_like_a_connection_option():
    with pytest.raises(ValueError, match="module options region clash with the connection options"):
        _connection.connection_argspec(region={"type": "str"})


def test_argspec_copies_are_independent():
    _connection.connection_argspec()["retries"]["default"] = 99
    assert _connection.connection_argspec()["retries"]["default"] == 10


@pytest.mark.parametrize("overrides,message", [
    ({"retries": -1}, "retries=-1 is not valid: expected how often a failed call is retried, 0 or more"),
    ({"retries": 0}, None),
    ({"access_key": "AKIAIOSFODNN7EXAMPLE"},
     "access_key is set but secret_key is not: give both, or neither to use the default credential chain"),
    ({"secret_key": "s"},
     "secret_key is set but access_key is not: give both, or neither to use the default credential chain"),
    ({"access_key": "AKIAIOSFODNN7EXAMPLE", "secret_key": "s", "profile": "ops"},
     "profile 'ops' and access_key are both set: give one of them"),
    ({}, None),
    ({"access_key": "AKIAIOSFODNN7EXAMPLE", "secret_key": "s"}, None),
])
def test_connection_problem(overrides, message):
    assert _connection.connection_problem(params(**overrides)) == message


def test_profile_wins_over_keys_from_the_environment(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFROMENV000000000")
    p = params(access_key="AKIAFROMENV000000000", secret_key="s", profile="ops")
    assert _connection.connection_problem(p) is None


def test_admin_client_uses_given_keys_endpoint_and_standard_retries():
    p = params(access_key="AKIAADMIN00000000000", secret_key="admin-secret", endpoint_url="http://127.0.0.1:9",
               retries=4, region="eu-west-1")
    session = _connection.admin_session(p)
    client = _connection.client(session, "iam", p, retries=p["retries"])
    assert session.get_credentials().access_key == "AKIAADMIN00000000000"
    assert client.meta.endpoint_url == "http://127.0.0.1:9"
    assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 5}
    assert "rekey.aws" in client.meta.config.user_agent_extra


def test_credential_source_names_the_option_or_the_environment(monkeypatch):
    p = params(access_key="AKIAADMIN00000000000", secret_key="admin-secret")
    source = _connection.credential_source(p, _connection.admin_session(p))
    assert source == "access key AKIAADMIN00000000000 from the access_key/secret_key options"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAADMIN00000000000")
    source = _connection.credential_source(p, _connection.admin_session(p))
    assert source.startswith("access key AKIAADMIN00000000000 from the AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
    assert "admin-secret" not in source


def test_credential_source_from_a_profile(tmp_path):
    (tmp_path / "credentials").write_text("[ops]\naws_access_key_id = AKIAPROFILE000000000\n"
                                          "aws_secret_access_key = profile-secret\n")
    p = params(profile="ops")
    source = _connection.credential_source(p, _connection.admin_session(p))
    assert source == "access key AKIAPROFILE000000000 from profile 'ops' (shared-credentials-file)"


def test_credential_source_without_credentials():
    p = params()
    assert _connection.credential_source(p, _connection.admin_session(p)) == (
        "no credentials found by boto3's default credential chain")


def test_key_clients_hold_only_the_key_under_test(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAADMIN00000000000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "admin-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "admin-token")
    sts = sts_for_key({"access_key_id": "AKIATESTED0000000000", "secret_access_key": "tested-secret"},
                      params(endpoint_url="http://127.0.0.1:9"))
    credentials = sts._request_signer._credentials.get_frozen_credentials()
    assert (credentials.access_key, credentials.secret_key, credentials.token) == (
        "AKIATESTED0000000000", "tested-secret", None)
    assert sts.meta.config.retries == {"mode": "standard", "total_max_attempts": 1}
    assert sts.meta.endpoint_url == "http://127.0.0.1:9"


def test_shared_client_is_made_once_per_connection_options(monkeypatch):
    monkeypatch.setattr(_connection, "_SHARED", {})
    p = params(access_key="AKIAADMIN00000000000", secret_key="admin-secret", endpoint_url="http://127.0.0.1:9")
    session, client = _connection.shared_client("iam", p, p["retries"])
    assert _connection.shared_client("iam", dict(p), p["retries"]) == (session, client)
    assert client.meta.endpoint_url == "http://127.0.0.1:9"
    others = [_connection.shared_client("iam", dict(p, secret_key="other-secret"), p["retries"]),
              _connection.shared_client("iam", dict(p, region="eu-west-1"), p["retries"]),
              _connection.shared_client("iam", p, 0),
              _connection.shared_client("sts", p, p["retries"])]
    assert len({id(c) for s, c in others} | {id(client)}) == 5
    assert others[0][0].get_credentials().secret_key == "other-secret"


def test_every_session_shares_one_reader_of_service_data():
    _connection.read_service_data(("iam", "sts"))
    loader = _connection._LOADER[0]
    admin = _connection.admin_session(params(access_key="AKIAADMIN00000000000", secret_key="admin-secret"))
    key = _connection.key_session("AKIAKEY0000000000000", "key-secret", None, "us-east-1")
    assert admin._session.get_component("data_loader") is loader
    assert key._session.get_component("data_loader") is loader
    # The key session holds the key only, the admin session the admin's.
    assert key.get_credentials().access_key == "AKIAKEY0000000000000"
    assert admin.get_credentials().access_key == "AKIAADMIN00000000000"
