"""IAM calls per rotated user (issue 10): a full rotation of one user makes at most 12 IAM calls,
each action within its budget, the same on 1 host as on 3 (constant in the fleet size), and no
host makes any IAM call. Counted on the strict endpoint (per action; by caller address), the
permission probes of the lock included (issue 11, item 5)."""
from __future__ import annotations

import os

import pytest

from tests.integration.fleet_lab import fleet_lab
from tests.integration.rotate_support import demo_consumer

pytestmark = [
    pytest.mark.fleet,
    pytest.mark.skipif(os.geteuid() != 0, reason="the fleet needs root: network namespaces, mounts, sshd"),
]

# Read tags and keys once (prepare), the old key's last use once (the idle check); the state
# written with the lock (planned), once the key is stored (distributing), with the renewed lock
# (distributed), and cleared with the unlock; UpdateAccessKey and DeleteAccessKey each once
# more as the lock's permission probe.
BUDGET = {
    "iam:ListUserTags": 1,
    "iam:ListAccessKeys": 1,
    "iam:GetAccessKeyLastUsed": 1,
    "iam:TagUser": 3,
    "iam:CreateAccessKey": 1,
    "iam:UpdateAccessKey": 2,
    "iam:DeleteAccessKey": 2,
    "iam:UntagUser": 1,
}
TOTAL = 12


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with fleet_lab(tmp_path_factory.mktemp("budget"), 3) as made:
        yield made


def rotate_counted(lab, hosts):
    user, old = lab.seed(prefix=f"bud{len(hosts)}")
    consumers = {host: [demo_consumer(user)] for host in hosts}
    lab.ep.reset_counts()
    run = lab.run(consumers, rotate_force=True)
    assert run.rc == 0, f"rc={run.rc}\n{run.stdout[-6000:]}\n{run.stderr[-2000:]}"
    keys = lab.keys(user)
    assert len(keys) == 1 and old["AccessKeyId"] not in keys, keys
    iam = {name: n for name, n in lab.ep.counts().items() if name.startswith("iam:")}
    from_hosts = {name: n for name, n in lab.ep.host_counts().items() if name.startswith("iam:")}
    return iam, from_hosts


def test_iam_calls_per_user_within_budget_and_constant_in_fleet_size(lab):
    counted = {n: rotate_counted(lab, lab.hosts[:n]) for n in (1, 3)}
    for n, (iam, from_hosts) in counted.items():
        print(f"\n{n} host(s): {sum(iam.values())} IAM calls: {iam}")
        over = {name: (got, BUDGET.get(name, 0)) for name, got in iam.items() if got > BUDGET.get(name, 0)}
        assert not over, (n, over, iam)
        assert sum(iam.values()) <= TOTAL, (n, iam)
        assert from_hosts == {}, (n, from_hosts)
    assert counted[1][0] == counted[3][0], counted
