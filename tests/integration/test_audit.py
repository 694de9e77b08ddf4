"""The audit that advises, end to end on the fleet, as an operator holding only the two IAM actions
it needs: each key's consumers and hosts, what the fleet's hosts say about their machine (they are
not EC2 instances), a host the user declares one turned into an instance-role advice, an
unreachable host reported unknown, a key held by no consumer; read-only, 0600, no secret. The
findings themselves are decided and tested in tests/unit/plugins/module_utils/test_audit.py."""
from __future__ import annotations

import json
import os
import time

import pytest
import yaml

from tests.integration.fleet_lab import fleet_lab
from tests.integration.rotate_support import REPO, demo_consumer
from tests.support.ansible_run import run_playbook

AUDIT = REPO / "playbooks" / "audit.yml"
AUDIT_POLICY = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["iam:ListAccessKeys", "iam:GetAccessKeyLastUsed"], "Resource": "*"}]})


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the fleet needs root: network namespaces, mounts, sshd")
    with fleet_lab(tmp_path_factory.mktemp("audit"), 2) as made:
        yield made


def explain(run) -> str:
    return f"rc={run.rc}\nSTDOUT:\n{run.stdout[-6000:]}\nSTDERR:\n{run.stderr[-2000:]}"


def test_a_limit_leaving_out_localhost_fails_clearly(tmp_path):
    """No fleet needed: the check is the first play and contacts no host (web1 does not exist)."""
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"web1": {"ansible_host": "192.0.2.1"}}}}))
    run = run_playbook(AUDIT, inventory=str(inventory), args=["--limit", "web1"])
    assert run.rc != 0, explain(run)
    failure = run.task("Stop when --limit leaves out localhost")["result"]["msg"]
    assert failure.startswith("Nothing was audited. --limit web1 leaves out localhost"), failure
    assert [r["task"] for r in run.results if r["task"] == "Read the keys"] == []


@pytest.mark.fleet
def test_the_audit_maps_consumers_to_hosts_and_advises(lab, tmp_path):
    user, held = lab.seed(prefix="audit")  # both hosts' demo app run on it: used
    orphan = lab.ep.new_user("orphan")  # its key is held by no consumer, and never used
    loose = lab.ep.iam().create_access_key(UserName=orphan)["AccessKey"]
    operator = lab.ep.new_user("auditor")
    lab.ep.iam().put_user_policy(UserName=operator, PolicyName="audit", PolicyDocument=AUDIT_POLICY)
    op_key = lab.ep.iam().create_access_key(UserName=operator)["AccessKey"]
    plain, declared = lab.hosts
    consumer = demo_consumer(user)
    inventory = tmp_path / "audit-inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {
        plain: {"rotate_consumers": [consumer]},
        declared: {"rotate_consumers": [consumer], "audit_ec2_instance": True},
        # Not in the fleet's group (no fleet_* variables); nothing listens on port 9: ssh is refused at once.
        "ghost": {"rotate_consumers": [{"name": "demoapp", "iam_user": user, "path": "/etc/demoapp/credentials",
                                        "service": "demoapp", "health_url": "http://127.0.0.1:8080/health"}],
                  "ansible_host": "127.0.0.1", "ansible_port": 9, "ansible_user": "root"},
    }}}))
    report = tmp_path / "audit.json"
    lab.ep.reset_counts()
    started = time.monotonic()
    run = run_playbook(AUDIT, inventory=str(lab.fleet.inventory_path), args=["-i", str(inventory)],
                       extra_vars={"rotate_aws": {"endpoint_url": lab.ep.endpoint_url, "region": lab.ep.region,
                                                  "access_key": op_key["AccessKeyId"],
                                                  "secret_key": op_key["SecretAccessKey"]},
                                   "rotate_users": [user, orphan], "audit_report_path": str(report)})
    print(f"audit of 2 users on 3 hosts: {time.monotonic() - started:.1f} s")
    assert run.rc == 0, explain(run)

    # Read-only, and its IAM calls are per user and per key, none per host.
    assert run.changed == [] and lab.ep.write_counts() == {}
    assert {a: n for a, n in lab.ep.counts().items() if a.startswith("iam:")} == {
        "iam:ListAccessKeys": 2, "iam:GetAccessKeyLastUsed": 2}
    assert oct(report.stat().st_mode & 0o777) == "0o600"
    text = report.read_text()
    assert held["SecretAccessKey"] not in text and loose["SecretAccessKey"] not in text
    assert held["SecretAccessKey"] not in run.stdout and loose["SecretAccessKey"] not in run.stdout
    audit = json.loads(text)

    # What each host said: the fleet's hosts are not EC2 instances (no DMI in their namespace here:
    # unknown; a machine with DMI names its vendor), the declared one is, the ghost was not reached.
    hosts = audit["hosts"]
    assert hosts[plain]["ec2"] is not True, hosts
    if hosts[plain]["ec2"] is None:
        assert hosts[plain]["source"].endswith("set audit_ec2_instance"), hosts
    else:
        assert hosts[plain]["source"].startswith("DMI sys_vendor"), hosts
    assert hosts[declared] == {"ec2": True, "source": "audit_ec2_instance: true"}
    assert hosts["ghost"] == {"ec2": None, "source": "unreachable; set audit_ec2_instance"}
    assert run.task("Read the DMI vendor, asset tag and UUIDs", plain)["result"]["readings"].keys() >= {
        "sys_vendor", "board_asset_tag", "product_uuid"}

    by_id = {k["access_key_id"]: k for k in audit["access_keys"]}
    mine, theirs = by_id[held["AccessKeyId"]], by_id[loose["AccessKeyId"]]
    # In inventory order (the ghost, ungrouped, comes first); the fleet's paths templated.
    assert sorted((c["host"], c["name"], c["path"], c["format"]) for c in mine["consumers"]) == sorted(
        (h, "demoapp", "/etc/demoapp/credentials", "credentials") for h in (plain, declared, "ghost"))
    assert sorted(mine["held_by"]) == sorted([plain, declared, "ghost"])
    [advice] = [f["message"] for f in mine["findings"]]
    assert advice.startswith(f"{declared} is an EC2 instance (audit_ec2_instance: true): give it an instance role")
    assert theirs["consumers"] == [] and [f["finding"] for f in theirs["findings"]] == ["never_used", "no_consumer"]
    assert audit["findings"]["instance_role"] == [held["AccessKeyId"]]
    assert audit["findings"]["no_consumer"] == [loose["AccessKeyId"]]

    shown = run.task("Show the keys")["result"]["msg"]
    print("\n".join(shown))
    [line] = [line for line in shown if held["AccessKeyId"] in line]
    assert "held by demoapp on " in line and plain in line and declared in line and "ghost" in line, line
    assert "2 keys: due 0, never_used 1, unused 0, two_active_keys 0, no_consumer 1, instance_role 1" in shown
    assert f"EC2 instances (could use an instance role): {declared}" in shown
