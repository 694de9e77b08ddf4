"""Least privilege, proven: docs/iam-policy.json is enough for a full rotation and the audit, run
as an IAM user holding exactly that policy on the strict endpoint; without iam:TagUser, or
without iam:UpdateAccessKey or iam:DeleteAccessKey (which the lock's permission check probes),
the rotation is refused before any IAM write, naming the action; the permission check of
module_utils/_permissions.py finds a missing iam:UpdateAccessKey, iam:DeleteAccessKey or
iam:UntagUser before any write.

First, that the endpoint evaluates IAM policies at all (else every test below could not fail):
moto's server checks a request's signature and the caller's identity policies once
INITIAL_NO_AUTH_ACTION_COUNT requests were let through; tools/iam_endpoint.py sets it to 0 after
bootstrapping its admin. moto evaluates Action, NotAction and Effect (an explicit Deny wins), and
judges every IAM and Secrets Manager request against the resource "*": a Resource narrower than
"*" never matches there (test_a_narrower_resource_is_not_evaluated_by_moto). That is why the shipped
policy says "Resource": "*", and README.md says how to narrow it on AWS."""
from __future__ import annotations

import json
import os
import sys
import time

import pytest
from botocore.exceptions import ClientError

from tests.integration.fleet_lab import fleet_lab
from tests.integration.rotate_support import REPO, demo_consumer, everywhere
from tests.support.ansible_run import collections_path, run_playbook

sys.path.insert(0, collections_path())

from ansible_collections.rekey.aws.plugins.module_utils import _permissions  # noqa: E402
from ansible_collections.rekey.aws.plugins.module_utils import _secretsmanager as sm  # noqa: E402

POLICY_PATH = REPO / "docs" / "iam-policy.json"
POLICY_TEXT = POLICY_PATH.read_text()
AUDIT = REPO / "playbooks" / "audit.yml"
CREDENTIALS = "/etc/demoapp/credentials"
FAILED_TASK = "rekey.aws.rotate : Fail when the rotation did not complete"
LOCK_TASK = "rekey.aws.rotate : Lock the users of this run"


def policy_without(*actions: str) -> str:
    """The shipped policy with these actions taken out of its statements."""
    policy = json.loads(POLICY_TEXT)
    listed = {a for statement in policy["Statement"] for a in statement["Action"]}
    assert set(actions) <= listed, f"not in the shipped policy: {set(actions) - listed}"
    for statement in policy["Statement"]:
        statement["Action"] = [a for a in statement["Action"] if a not in actions]
    policy["Statement"] = [st for st in policy["Statement"] if st["Action"]]  # IAM refuses an empty one
    return json.dumps(policy)


def operator(ep, policy_text: str, prefix: str = "operator") -> tuple[str, str, str]:
    """An IAM user holding exactly this policy (inline) and its key: (user, key id, secret)."""
    name = ep.new_user(prefix)
    ep.iam().put_user_policy(UserName=name, PolicyName="rekey-aws", PolicyDocument=policy_text)
    key = ep.iam().create_access_key(UserName=name)["AccessKey"]
    return name, key["AccessKeyId"], key["SecretAccessKey"]


def denied_code(call, **kwargs) -> tuple[str, str]:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    return caught.value.response["Error"]["Code"], caught.value.response["Error"]["Message"]


def iam_state(ep, user: str) -> tuple[dict, list]:
    """The user's keys and tags, out of band."""
    keys = {k["AccessKeyId"]: k["Status"] for k in ep.iam().list_access_keys(UserName=user)["AccessKeyMetadata"]}
    return keys, sorted((t["Key"], t["Value"]) for t in ep.iam().list_user_tags(UserName=user)["Tags"])


# --- the endpoint evaluates policies (no fleet) ---------------------------------------------

def test_the_endpoint_denies_what_the_policy_does_not_allow(endpoint):
    target = endpoint.new_user("target")
    _name, key_id, secret = operator(endpoint, policy_without("iam:TagUser"))
    iam = endpoint.iam(key_id, secret)

    assert iam.list_user_tags(UserName=target)["Tags"] == []  # allowed by the policy
    code, message = denied_code(iam.tag_user, UserName=target, Tags=[{"Key": "k", "Value": "v"}])
    assert code == "AccessDenied" and "iam:TagUser" in message, message
    code, message = denied_code(iam.get_user, UserName=target)  # in no policy: the old README's mistake
    assert code == "AccessDenied" and "iam:GetUser" in message, message
    assert endpoint.iam().list_user_tags(UserName=target)["Tags"] == []


def test_an_explicit_deny_wins_over_the_policy(endpoint):
    target = endpoint.new_user("target")
    name, key_id, secret = operator(endpoint, POLICY_TEXT)
    iam = endpoint.iam(key_id, secret)
    iam.list_access_keys(UserName=target)
    endpoint.iam().put_user_policy(UserName=name, PolicyName="deny", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Deny", "Action": "iam:ListAccessKeys", "Resource": "*"}]}))
    code, message = denied_code(iam.list_access_keys, UserName=target)
    assert code == "AccessDenied" and "iam:ListAccessKeys" in message, message


def test_sts_get_caller_identity_needs_no_permission(endpoint):
    """As on AWS: the new key (whose user has no policy) proves itself through STS, even when a
    policy denies sts:*; so the shipped policy grants no STS action."""
    user = endpoint.new_user("app")
    endpoint.iam().put_user_policy(UserName=user, PolicyName="deny-sts", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "sts:*", "Resource": "*"}]}))
    key = endpoint.iam().create_access_key(UserName=user)["AccessKey"]
    sts = endpoint.sts(key["AccessKeyId"], key["SecretAccessKey"])
    assert sts.get_caller_identity()["Arn"].endswith(f":user/{user}")


def test_a_narrower_resource_is_not_evaluated_by_moto(endpoint):
    """A limit of the endpoint, kept visible: on AWS this policy allows ListAccessKeys on every
    user; moto judges the request against "*" and denies it. If moto learns resources, this fails,
    and the shipped policy and this file can be narrowed and proven."""
    target = endpoint.new_user("target")
    _name, key_id, secret = operator(endpoint, json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iam:ListAccessKeys",
                                                "Resource": f"arn:aws:iam::{endpoint.account_id}:user/*"}]}))
    code, _message = denied_code(endpoint.iam(key_id, secret).list_access_keys, UserName=target)
    assert code == "AccessDenied"


@pytest.mark.parametrize("missing", [action for action, _m, _k, _g in _permissions.PROBES])
def test_the_permission_check_finds_a_missing_write_and_changes_nothing(endpoint, missing):
    target = endpoint.new_user("target")
    endpoint.iam().create_access_key(UserName=target)
    endpoint.iam().tag_user(UserName=target, Tags=[{"Key": "team", "Value": "ops"}])
    before = iam_state(endpoint, target)
    _name, key_id, secret = operator(endpoint, policy_without(missing))
    endpoint.reset_counts()

    summary = _permissions.check(endpoint.iam(key_id, secret), [target])

    assert summary == {"denied": {missing: [target]}, "ok": False}
    message = _permissions.refusal_message(summary)
    assert message.startswith("Nothing was changed") and f"{missing} (IAM user '{target}')" in message
    assert iam_state(endpoint, target) == before
    assert endpoint.counts() == {"iam:DeleteAccessKey": 1, "iam:UntagUser": 1, "iam:UpdateAccessKey": 1}


def test_the_permission_check_passes_with_the_shipped_policy(endpoint):
    targets = sorted([endpoint.new_user("target"), endpoint.new_user("target")])
    for target in targets:
        endpoint.iam().create_access_key(UserName=target)
    before = [iam_state(endpoint, t) for t in targets]
    _name, key_id, secret = operator(endpoint, POLICY_TEXT)

    assert _permissions.check(endpoint.iam(key_id, secret), targets) == {"denied": {}, "ok": True}
    assert [iam_state(endpoint, t) for t in targets] == before


def test_every_secrets_manager_call_of_the_store_is_allowed_by_the_policy(endpoint):
    """The store's whole life through _secretsmanager.py as the operator: create, overwrite, schedule
    for deletion, restore and overwrite; each of the six actions is made and none is denied."""
    user = endpoint.new_user("stored")
    _name, key_id, secret = operator(endpoint, POLICY_TEXT)
    client = endpoint.secretsmanager(key_id, secret)
    name = sm.default_secret_name(user)
    endpoint.reset_counts()

    assert sm.store(client, name, user, "AKIAFIRST0000000000A", "first-secret")[0] is True
    assert sm.store(client, name, user, "AKIASECOND000000000A", "second-secret")[0] is True
    assert sm.remove(client, name, user, "AKIASECOND000000000A")[0] is True
    assert sm.store(client, name, user, "AKIATHIRD0000000000A", "third-secret")[0] is True
    assert sm.read_record(client, name, user)["access_key_id"] == "AKIATHIRD0000000000A"

    called = {a for a in endpoint.counts() if a.startswith("secretsmanager:")}
    assert called == set(_permissions.SECRETSMANAGER_ACTIONS)
    _name, key_id, secret = operator(endpoint, policy_without("secretsmanager:PutSecretValue"))
    with pytest.raises(sm.KeyStoreError, match="secretsmanager:PutSecretValue.*AccessDenied"):
        sm.store(endpoint.secretsmanager(key_id, secret), name, user, "AKIAFOURTH000000000A", "fourth")


# --- the rotation and the audit on the fleet, as that operator ------------------------------

@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the fleet needs root: network namespaces, mounts, sshd")
    with fleet_lab(tmp_path_factory.mktemp("least-privilege"), 1) as made:
        yield made


def rotate_aws(lab, policy_text: str) -> dict:
    _name, key_id, secret = operator(lab.ep, policy_text)
    return {"endpoint_url": lab.ep.endpoint_url, "region": lab.ep.region, "access_key": key_id, "secret_key": secret}


def explain(run) -> str:
    return f"rc={run.rc}\nSTDOUT:\n{run.stdout[-6000:]}\nSTDERR:\n{run.stderr[-2000:]}"


def assert_no_denial(run) -> None:
    denied = [r["task"] for r in run.results if "AccessDenied" in json.dumps(r.get("result", {}))
              or "access denied" in json.dumps(r.get("result", {})).lower()]
    assert not denied, denied


@pytest.mark.fleet
def test_a_full_rotation_as_an_operator_holding_exactly_the_policy(lab):
    """With the Secrets Manager store: its AWS calls are a superset of the vault_file store's, which
    makes none (test_iam_policy.py: no AWS call outside _iam.py and _secretsmanager.py)."""
    user, old = lab.seed(prefix="lp-rot")
    aws = rotate_aws(lab, POLICY_TEXT)
    lab.ep.reset_counts()
    started = time.monotonic()
    run = lab.run(everywhere(lab, demo_consumer(user)), rotate_force=True, rotate_store_backend="secretsmanager",
                  rotate_aws=aws)
    print(f"rotation as the least-privilege operator: {time.monotonic() - started:.1f} s")

    assert run.rc == 0, explain(run)
    assert_no_denial(run)
    [entry] = run.report["users"]
    assert entry["result"] == "rotated" and entry["phase_reached"] == "old_retired", entry
    new_id = entry["new_key_id"]
    assert iam_state(lab.ep, user) == ({new_id: "Active"}, [])
    assert all(lab.app_key_id(h) == new_id and lab.file_key_id(h) == new_id for h in lab.hosts)
    secret = json.loads(lab.ep.secretsmanager().get_secret_value(SecretId=f"rekey/{user}")["SecretString"])
    assert secret["access_key_id"] == new_id
    # Every IAM action of the rotation was exercised under the policy, and none outside it.
    called = {name for name, n in lab.ep.counts().items() if n and name.split(":")[0] in ("iam", "secretsmanager")}
    assert set(_permissions.ROTATE_ACTIONS) <= called, sorted(called)
    assert called <= set(_permissions.required_actions("secretsmanager")), sorted(called)
    assert {"secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue",
            "secretsmanager:CreateSecret"} <= called, sorted(called)


@pytest.mark.fleet
def test_the_audit_as_an_operator_holding_exactly_the_policy(lab, tmp_path):
    user, old = lab.seed(prefix="lp-audit")
    aws = rotate_aws(lab, POLICY_TEXT)
    # Every user: the audit's calls for named users (ListAccessKeys, GetAccessKeyLastUsed) plus ListUsers.
    report = tmp_path / "audit.json"
    run = run_playbook(AUDIT, inventory=str(lab.fleet.inventory_path),
                       extra_vars={"rotate_aws": aws, "audit_report_path": str(report), "audit_all_users": True})
    assert run.rc == 0, explain(run)
    keys = json.loads(report.read_text())["access_keys"]
    assert old["AccessKeyId"] in [k["access_key_id"] for k in keys if k["user_name"] == user]
    assert report.stat().st_mode & 0o777 == 0o600
    # ListUsers is the one action only the audit of every user needs: without it, that audit is refused.
    run = run_playbook(AUDIT, inventory=str(lab.fleet.inventory_path),
                       extra_vars={"rotate_aws": rotate_aws(lab, policy_without("iam:ListUsers")),
                                   "audit_all_users": True})
    assert run.rc != 0 and "iam:ListUsers" in run.task("Read the keys")["result"]["msg"], explain(run)


@pytest.mark.fleet
def test_without_tag_user_the_rotation_is_refused_before_any_iam_write(lab):
    """iam:TagUser is the rotation's first write (the lock): denied, nothing in IAM or on the hosts
    changed, and the failure names the action."""
    user, old = lab.seed(prefix="lp-notag")
    before_iam = iam_state(lab.ep, user)
    before_files = {h: lab.read(h, CREDENTIALS) for h in lab.hosts}
    aws = rotate_aws(lab, policy_without("iam:TagUser"))
    lab.ep.reset_counts()

    run = lab.run(everywhere(lab, demo_consumer(user)), rotate_force=True, rotate_aws=aws)

    assert run.rc != 0, explain(run)
    # The only IAM write attempted is the denied lock: it is the first write, and nothing came after
    # it. Before it, the lock's permission probes (on a key id IAM never issues: they change nothing).
    assert lab.ep.write_counts() == {"iam:TagUser": 1, "iam:UpdateAccessKey": 1, "iam:DeleteAccessKey": 1}, \
        lab.ep.counts()
    assert iam_state(lab.ep, user) == before_iam
    assert {h: lab.read(h, CREDENTIALS) for h in lab.hosts} == before_files
    assert all(lab.app_key_id(h) == old["AccessKeyId"] for h in lab.hosts)
    lock_message = run.task(LOCK_TASK)["result"]["msg"]
    assert "iam:TagUser" in lock_message and "access denied" in lock_message.lower(), lock_message
    failure = run.task(FAILED_TASK)["result"]["msg"]
    assert "iam:TagUser" in failure, failure
    report = run.report
    assert not report["ok"] and "refused before any change" in report["message"], report
    assert [u["result"] for u in report["users"]] == ["refused"]


@pytest.mark.fleet
@pytest.mark.parametrize("missing", _permissions.LOCK_PROBES)
def test_without_a_key_write_the_rotation_is_refused_before_the_lock(lab, missing):
    """The lock's permission check: a policy without iam:UpdateAccessKey (or DeleteAccessKey) could
    create and distribute a key but never retire the old one (nor delete a new key no host got).
    Refused before the first write: no TagUser, no CreateAccessKey, and the message names the action."""
    user, old = lab.seed(prefix=f"lp-no{missing[4:10].lower()}")
    before_iam = iam_state(lab.ep, user)
    before_files = {h: lab.read(h, CREDENTIALS) for h in lab.hosts}
    aws = rotate_aws(lab, policy_without(missing))
    lab.ep.reset_counts()

    run = lab.run(everywhere(lab, demo_consumer(user)), rotate_force=True, rotate_aws=aws)

    assert run.rc != 0, explain(run)
    counts = lab.ep.counts()
    assert "iam:TagUser" not in counts and "iam:CreateAccessKey" not in counts, counts
    # Only the two probes, on a key id IAM never issues.
    assert lab.ep.write_counts() == {"iam:UpdateAccessKey": 1, "iam:DeleteAccessKey": 1}, counts
    assert iam_state(lab.ep, user) == before_iam
    assert {h: lab.read(h, CREDENTIALS) for h in lab.hosts} == before_files
    lock_message = run.task(LOCK_TASK)["result"]["msg"]
    assert lock_message.startswith("Nothing was changed") and f"{missing} (IAM user '{user}')" in lock_message, \
        lock_message
    assert missing in run.task(FAILED_TASK)["result"]["msg"]
    assert [u["result"] for u in run.report["users"]] == ["refused"], run.report
