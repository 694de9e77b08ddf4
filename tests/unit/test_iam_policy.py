"""docs/iam-policy.json is exactly the set of AWS actions the collection's code calls: derived here
from the one file per service that makes the calls, so a new call without a policy update (or a
policy action no code calls, such as the iam:GetUser of old) fails this test."""
import json
import re
import sys
from pathlib import Path

from tests.support.ansible_run import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.rekey.aws.plugins.module_utils import _permissions  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "docs" / "iam-policy.json"
PLUGINS = REPO / "plugins"
IAM = PLUGINS / "module_utils" / "_iam.py"
SECRETSMANAGER = PLUGINS / "module_utils" / "_secretsmanager.py"
SSM = PLUGINS / "module_utils" / "_ssm.py"
PERMISSIONS = PLUGINS / "module_utils" / "_permissions.py"
# Where a boto3 client is made; each hands it only to _iam.py / _secretsmanager.py / _ssm.py functions.
CLIENT_MAKERS = {"plugins/module_utils/_iam.py", "plugins/action/key_store.py", "plugins/lookup/stored_key.py",
                 "plugins/module_utils/_aws_consumers.py"}


def camel(snake):
    return "".join(part.capitalize() for part in snake.split("_"))


# Statements scoped to resources; every other statement is on "*".
SCOPED = {"RekeySsmKeyStore": "arn:aws:ssm:*:*:parameter/rekey/*"}


def statements():
    policy = json.loads(POLICY.read_text())
    assert policy["Version"] == "2012-10-17"
    found = {statement["Sid"]: statement for statement in policy["Statement"]}
    assert len(found) == len(policy["Statement"]), "a Sid is used twice"
    return found


def policy_actions():
    actions = set()
    for sid, statement in statements().items():
        assert statement["Effect"] == "Allow" and statement["Resource"] == SCOPED.get(sid, "*"), statement
        assert set(statement) == {"Sid", "Effect", "Action", "Resource"}, statement
        # An action may serve two uses, each its own statement (one can be dropped alone).
        assert len(statement["Action"]) == len(set(statement["Action"])), "an action is listed twice in a statement"
        actions.update(statement["Action"])
    return actions


def called_actions():
    iam = IAM.read_text()
    actions = {"iam:" + a for a in re.findall(r'_call\("(\w+)"', iam)}
    actions |= {"iam:" + camel(p) for p in re.findall(r'get_paginator\("(\w+)"\)', iam)}
    sm = SECRETSMANAGER.read_text()
    actions |= {"secretsmanager:" + a for a in re.findall(r'(?:_call|_error)\("(\w+)"', sm)}
    actions |= {"ssm:" + a for a in re.findall(r'_error\("(\w+)"', SSM.read_text())}
    return actions


def test_the_policy_is_every_action_the_code_calls_and_no_other():
    called = called_actions()
    assert len(called) == 18, sorted(called)  # the extraction found the calls
    assert policy_actions() == called


def test_the_policy_matches_the_permission_module():
    every_use = set(_permissions.required_actions("secretsmanager", audit_all_users=True, aws_consumers=True)) | set(
        _permissions.required_actions("ssm"))
    assert policy_actions() == every_use
    assert set(_permissions.required_actions("vault_file")) == policy_actions() - set(
        _permissions.SECRETSMANAGER_ACTIONS) - set(_permissions.SSM_STORE_ACTIONS) - set(
        _permissions.AWS_CONSUMER_ACTIONS) - {"iam:ListUsers"}


def test_the_ssm_key_store_has_its_own_statement():
    assert statements()["RekeySsmKeyStore"]["Action"] == list(_permissions.SSM_STORE_ACTIONS)


def test_the_consumers_in_aws_have_their_own_statement():
    assert statements()["RekeyConsumersInAws"]["Action"] == list(_permissions.AWS_CONSUMER_ACTIONS)
    assert set(_permissions.required_actions(aws_consumers=True)) - set(_permissions.required_actions()) == set(
        _permissions.AWS_CONSUMER_ACTIONS)


def test_no_getuser_and_no_sts_permission():
    actions = policy_actions()
    assert "iam:GetUser" not in actions
    assert not [a for a in actions if a.startswith("sts:")]


def test_sts_is_only_called_with_the_new_key():
    """sts:GetCallerIdentity needs no permission, but only because it is made with the new key
    (sts_for_key), never with the rotation's own credentials."""
    hits = [p.relative_to(REPO).as_posix() for p in PLUGINS.rglob("*.py") if "get_caller_identity" in p.read_text()]
    assert hits == ["plugins/module_utils/_iam.py"]
    users = [p.relative_to(REPO).as_posix() for p in PLUGINS.rglob("*.py")
             if re.search(r"\bcaller_identity\(", p.read_text()) and p != IAM]
    assert users == ["plugins/modules/access_key_verify.py"]
    assert "sts_for_key(" in (PLUGINS / "modules" / "access_key_verify.py").read_text()
    assert '"sts"' not in IAM.read_text().replace('session, "sts", params, retries=0', "")


def test_no_aws_call_outside_the_service_files():
    makers = {p.relative_to(REPO).as_posix() for p in PLUGINS.rglob("*.py") if "_connection.client(" in p.read_text()}
    assert makers == CLIENT_MAKERS
    for path in PLUGINS.rglob("*.py"):
        if path in (IAM, SECRETSMANAGER, SSM, PERMISSIONS):
            continue
        text = path.read_text()
        assert not re.search(r"\bclient\.(?!meta\b)[a-z_]+\(", text), path
        assert "get_paginator(" not in text, path


def test_the_permission_probes_need_nothing_beyond_the_policy():
    assert {action for action, _m, _k, _g in _permissions.PROBES} <= set(_permissions.ROTATE_ACTIONS)
    probed = {action for action, _m, _k, _g in _permissions.PROBES}
    assert probed | set(_permissions.NOT_PROBED) == set(_permissions.ROTATE_ACTIONS)
