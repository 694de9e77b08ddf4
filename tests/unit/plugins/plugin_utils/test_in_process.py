"""plugin_utils/_in_process: a module's work run in the controller's process gives what the shipped
module gives: the same refusals, the same serialised result, no_log values masked, the task's
check mode, diff and environment."""
import datetime
import importlib
import os
import sys
import types

import pytest

from tests.support.ansible_run import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.rekey.aws.plugins.module_utils import _connection, _iam  # noqa: E402
from ansible_collections.rekey.aws.plugins.modules import (access_key, access_key_info, access_key_verify,  # noqa: E402
                                                            rotation_lock, rotation_state, rotation_state_info)
from ansible_collections.rekey.aws.plugins.plugin_utils import _in_process  # noqa: E402

IN_PROCESS = [access_key, access_key_info, access_key_verify, rotation_lock, rotation_state, rotation_state_info]
SECRET = "unit/Secret+Value0000000000000000000000"
KEY_ID = "AKIAIOSFODNN7EXAMPLE"


@pytest.fixture(autouse=True)
def no_aws(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the module reached AWS")
    monkeypatch.setattr(_iam.Iam, "connect", refuse)


@pytest.mark.parametrize("module", IN_PROCESS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_each_action_plugin_runs_its_namesake(module):
    name = module.__name__.rsplit(".", 1)[-1]
    action = importlib.import_module("ansible_collections.rekey.aws.plugins.action." + name)
    assert action.ActionModule.MODULE is module
    assert issubclass(action.ActionModule, _in_process.ModuleInProcess)


@pytest.mark.parametrize("module,args,message", [
    (access_key, {"user_name": "app", "state": "absent"}, "state is absent but all of the following are missing: id"),
    (access_key, {"user_name": "app", "state": "inactive", "id": "xyz"},
     "id 'xyz' is not an access key id: expected 16-128 upper-case letters and digits"),
    (access_key, {"user_name": "app", "max_age_days": "three"},
     "argument 'max_age_days' is of type "),  # the rest of core's message differs between versions
    (access_key, {"user_name": "app", "colour": "red"},
     "Unsupported parameters for (rekey.aws.access_key) module: colour. Supported parameters include: "),
    (access_key, {"user_name": "app", "access_key": KEY_ID},
     "access_key is set but secret_key is not: give both, or neither to use the default credential chain"),
    (access_key_info, {"user_names": []}, "user_names is empty: expected at least one IAM user name"),
    (access_key_verify, {"keys": [{"access_key_id": KEY_ID, "secret_access_key": SECRET}], "consecutive": 0},
     "consecutive=0 is not valid: expected at least 1"),
    (rotation_lock, {"user_names": ["app"], "run_id": "r1"}, "state is locked but all of the following are missing: holder"),
    (rotation_state, {"user_name": "app", "run_id": "r1"}, "state is present but all of the following are missing: phase"),
    (rotation_state_info, {}, "missing required arguments: user_names"),
])
def test_refusals_name_the_bad_value_before_any_call(module, args, message):
    name = "rekey.aws." + module.__name__.rsplit(".", 1)[-1]
    result = _in_process.run_module(module, name, args, check_mode=False, diff=False)
    assert result["failed"] is True and result["changed"] is False
    assert result["msg"].startswith(message), result["msg"]
    assert SECRET not in str(result)


def test_missing_boto3_is_named(monkeypatch):
    monkeypatch.setattr(_connection, "HAS_BOTO3", False)
    result = _in_process.run_module(access_key, "rekey.aws.access_key", {"user_name": "app"}, False, False)
    assert result["failed"] and result["msg"].startswith("Failed to import the required Python library (boto3)")


def stub(execute, **spec):
    """A module of the shape run_module expects, for what no real module returns on purpose."""
    return types.SimpleNamespace(ARGUMENT_SPEC=dict({"name": {"type": "str"}}, **spec), CONSTRAINTS={},
                                 execute=execute)


def test_check_mode_diff_and_parameters_reach_execute():
    seen = {}

    def execute(module):
        seen.update(check_mode=module.check_mode, diff=module._diff, params=module.params)
        return {"changed": True}
    for check_mode, diff in ((True, False), (False, True)):
        assert _in_process.run_module(stub(execute, count={"type": "int", "default": 3}), "x", {"name": "a"},
                                      check_mode, diff) == {"changed": True}
        assert seen == {"check_mode": check_mode, "diff": diff, "params": {"name": "a", "count": 3}}


def test_a_failure_keeps_its_fields_and_the_warnings_come_back():
    def execute(module):
        module.warn("slow endpoint")
        module.fail_json(msg="denied", error_code="AccessDenied", action="iam:ListAccessKeys")
    result = _in_process.run_module(stub(execute), "x", {}, False, False)
    assert result == {"failed": True, "changed": False, "msg": "denied", "error_code": "AccessDenied",
                      "action": "iam:ListAccessKeys", "warnings": ["slow endpoint"]}


def test_no_log_values_are_masked_and_the_result_is_serialised_as_exit_json_would():
    def execute(module):
        return {"echo": "token %s" % module.params["token"],
                "when": datetime.datetime(2026, 12, 3, 7, 0, tzinfo=datetime.timezone.utc)}
    result = _in_process.run_module(stub(execute, token={"type": "str", "no_log": True}), "x", {"token": SECRET},
                                    False, False)
    assert result == {"changed": False, "echo": "token ********", "when": "2026-12-03T07:00:00+00:00"}


def test_an_env_fallback_reads_the_task_environment_which_is_restored_after(monkeypatch):
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    seen = {}

    def execute(module):
        seen.update(region=module.params["region"], profile=module.params["profile"])
        return {}
    spec = _connection.connection_argspec(name={"type": "str"})
    module = types.SimpleNamespace(ARGUMENT_SPEC=spec, CONSTRAINTS={}, execute=execute)
    with _in_process.environment({"AWS_REGION": "ap-south-1", "AWS_PROFILE": "ops"}):
        _in_process.run_module(module, "x", {}, False, False)
    assert seen == {"region": "ap-south-1", "profile": "ops"}
    assert os.environ["AWS_REGION"] == "eu-west-1" and "AWS_PROFILE" not in os.environ
