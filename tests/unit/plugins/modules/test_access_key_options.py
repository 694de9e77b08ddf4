"""The IAM key modules refuse bad options before any AWS call, with a message naming the value."""
import contextlib
import json
import sys
from unittest import mock

import pytest

from tests.support.ansible_run import collections_path

sys.path.insert(0, collections_path())

from ansible.module_utils import basic  # noqa: E402

from ansible_collections.rekey.aws.plugins.module_utils import _iam  # noqa: E402
from ansible_collections.rekey.aws.plugins.modules import access_key, access_key_info, access_key_verify  # noqa: E402

try:
    from ansible.module_utils.testing import patch_module_args
except ImportError:  # ansible-core < 2.19
    @contextlib.contextmanager
    def patch_module_args(args):
        payload = json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode()
        with mock.patch.object(basic, "_ANSIBLE_ARGS", payload):
            yield

SECRET = "unit/Secret+Value0000000000000000000000"


@pytest.fixture(autouse=True)
def no_aws(monkeypatch):
    """Any AWS client creation fails the test: these errors must come before any call."""
    def refuse(*args, **kwargs):
        raise AssertionError("the module reached AWS")
    monkeypatch.setattr(_iam.Iam, "connect", refuse)
    monkeypatch.setattr(_iam, "sts_for_key", refuse)
    monkeypatch.setattr(access_key_verify, "sts_for_key", refuse)


def failure(capsys, module, args):
    capsys.readouterr()
    with patch_module_args(args), pytest.raises(SystemExit) as exit_:
        module.main()
    result = json.loads(capsys.readouterr().out)
    assert exit_.value.code == 1 and result["failed"], result
    assert "Traceback" not in json.dumps(result)
    return result["msg"]


@pytest.mark.parametrize("args,message", [
    ({"user_name": "app", "state": "inactive", "id": "xyz"},
     "id 'xyz' is not an access key id: expected 16-128 upper-case letters and digits"),
    ({"user_name": "app", "state": "absent", "id": "akiaiosfodnn7example"},
     "id 'akiaiosfodnn7example' is not an access key id: expected 16-128 upper-case letters and digits"),
    ({"user_name": "app", "id": "AKIAIOSFODNN7EXAMPLE"},
     "id is not used with state=present: a key id is given to state=active, inactive or absent"),
    ({"user_name": "app", "max_age_days": -1}, "max_age_days=-1 is not valid: expected 0 or more days"),
    ({"user_name": "app", "state": "inactive", "id": "AKIAIOSFODNN7EXAMPLE", "max_age_days": 3},
     "max_age_days is only used with state=present, not state=inactive"),
    ({"user_name": "app", "state": "absent"}, "state is absent but all of the following are missing: id"),
    ({"user_name": "app", "access_key": "AKIAIOSFODNN7EXAMPLE"},
     "access_key is set but secret_key is not: give both, or neither to use the default credential chain"),
    ({"user_name": "app", "retries": -2}, "retries=-2 is not valid: expected how often a failed call is retried, "
                                          "0 or more"),
])
def test_access_key_refuses(capsys, args, message):
    assert failure(capsys, access_key, args) == message


@pytest.mark.parametrize("args,message", [
    ({}, "give exactly one of user_name, user_names, all_users=true or access_key_ids; got none of them"),
    ({"all_users": False}, "give exactly one of user_name, user_names, all_users=true or access_key_ids; got none of them"),
    ({"user_name": "a", "all_users": True},
     "give exactly one of user_name, user_names, all_users=true or access_key_ids; got user_name and all_users"),
    ({"user_names": []}, "user_names is empty: expected at least one IAM user name"),
    ({"user_name": ""}, "user_name is empty: expected an IAM user name"),
    ({"user_name": "a", "min_age_days": -5}, "min_age_days=-5 is not valid: expected 0 or more days"),
])
def test_access_key_info_refuses(capsys, args, message):
    assert failure(capsys, access_key_info, args) == message


KEY = {"access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": SECRET}


@pytest.mark.parametrize("args,message", [
    ({"keys": []}, "keys is empty: expected at least one key to check"),
    ({"keys": [KEY, dict(KEY, access_key_id="xyz")]},
     "keys[1].access_key_id 'xyz' is not an access key id: expected 16-128 upper-case letters and digits"),
    ({"keys": [KEY], "consecutive": 0}, "consecutive=0 is not valid: expected at least 1"),
    ({"keys": [KEY], "timeout": 0}, "timeout=0 is not valid: expected at least 1"),
    ({"keys": [KEY], "interval": -1}, "interval=-1.0 is not valid: expected at least 0"),
])
def test_access_key_verify_refuses(capsys, args, message):
    msg = failure(capsys, access_key_verify, args)
    assert msg == message
    assert SECRET not in msg


@pytest.mark.parametrize("module,args", [
    (access_key, {"user_name": "app"}),
    (access_key_info, {"user_name": "app"}),
    (access_key_verify, {"keys": [KEY]}),
])
def test_missing_boto3_is_named(capsys, monkeypatch, module, args):
    monkeypatch.setattr(module, "HAS_BOTO3", False)
    assert failure(capsys, module, args).startswith("Failed to import the required Python library (boto3)")
