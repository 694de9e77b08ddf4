"""The fault matrix, AWS side (issue 4, item 1): the rotation (playbooks/rotate.yml) on a fleet of
two hosts while the strict endpoint throttles, fails, refuses or lacks what the run needs, or
the inventory is wrong. The prober polls every app throughout.

Each case asserts the invariants of ARCHITECTURE.md ("The promise"): no auth failure on any host
(prober); IAM read out of band (never more than two keys, no key in use deleted, which key is
Active); the run's outcome and an error naming what failed; then a re-run with the faults
cleared converges (one Active new key used by every host) or stays in the documented state.

Faults that hit AWS calls use fault_scope "controller": the rotation's own calls are under fire,
not the apps' health calls, which would only blur what the prober measures.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import pytest

from tests.integration.fleet_lab import fleet_lab
from tests.integration.rotate_support import PROBE_INTERVAL_S, demo_consumer, everywhere, sts_check_consumer
from tools.prober import Prober

pytestmark = [
    pytest.mark.fleet,
    pytest.mark.skipif(os.geteuid() != 0, reason="the fleet needs root: network namespaces, mounts, sshd"),
]

CREDENTIALS = "/etc/demoapp/credentials"
FAILED_TASK = "rekey.aws.rotate : Fail when the rotation did not complete"
PLAN_TASK = "rekey.aws.rotate : Plan every user before any write"
PREFLIGHT_TASK = "rekey.aws.rotate : Check the variables and every consumer before any write"
# The durable rotation state lives in IAM user tags; those writes are not key writes.
TAG_WRITES = ("iam:TagUser", "iam:UntagUser")
# A canary and one more: the rollout has two batches (rotate_serial's default [1, "25%"]).
HOSTS = 2


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with fleet_lab(tmp_path_factory.mktemp("faults-aws"), HOSTS) as made:
        yield made


@pytest.fixture
def clean(lab):
    """No faults and zeroed counts; each test seeds its own user (seed() puts every app on its key)."""
    lab.ep.clear_faults()
    lab.ep.reset_counts()
    yield lab
    lab.ep.clear_faults()


# --- running and observing ------------------------------------------------------------------

@dataclass
class Observed:
    """One run and what was seen out of band during and after it."""
    run: object
    totals: dict
    timeline: list[dict]
    keys: dict[str, str]
    apps: dict[str, str | None]
    files: dict[str, str | None]
    counts: dict
    writes: dict
    faulted: dict
    scheduled: dict

    @property
    def entry(self) -> dict:
        [entry] = self.run.report["users"]
        return entry

    def failure(self) -> str:
        return self.run.task(FAILED_TASK)["result"]["msg"]


def explain(observed: Observed) -> str:
    run = observed.run
    return f"rc={run.rc}\nSTDOUT:\n{run.stdout[-8000:]}\nSTDERR:\n{run.stderr[-3000:]}"


def host_files(lab) -> dict[str, str]:
    """Content and modification time (ns) of every host's credentials file."""
    return {h: lab.fleet.exec(h, f"cat {CREDENTIALS}; stat -c %.9Y {CREDENTIALS}").stdout for h in lab.hosts}


def run_under(lab, user: str, consumers, *, faults: dict | None = None, name: str = "run", **overrides) -> Observed:
    """Set the faults, run the rotation with the prober on, clear the faults, observe (IAM: the
    user's keys)."""
    lab.ep.clear_faults()
    lab.ep.reset_counts()
    if faults:
        lab.ep.set_faults(**faults)
    timeline_path = lab.dir / f"{name}-{lab.runs + 1}-timeline.jsonl"
    prober = Prober(lab.fleet.app_urls, timeline=timeline_path, interval=PROBE_INTERVAL_S).start()
    try:
        run = lab.run(consumers, **overrides)
    finally:
        totals = prober.stop()
        scheduled = lab.ep.scheduled_keys()  # cleared with the faults
        lab.ep.clear_faults()
    timeline = [json.loads(line) for line in timeline_path.read_text().splitlines() if line]
    return Observed(run=run, totals=totals, timeline=timeline, keys=lab.keys(user), apps={h: lab.app_key_id(h) for h in lab.hosts},
                    files={h: lab.file_key_id(h) for h in lab.hosts}, counts=lab.ep.counts(),
                    writes=lab.ep.write_counts(), faulted=lab.ep.faulted_counts(), scheduled=scheduled)


def assert_safe(observed: Observed) -> None:
    """The invariants that hold whatever happened: no app was ever refused; at most two keys; each
    app runs on a key that IAM still has Active, and holds that key in its file."""
    overall = observed.totals["overall"]
    assert overall["auth_failures"] == 0, observed.totals
    assert overall["probes"] > 0 and overall["ok"] > 0, observed.totals
    assert len(observed.keys) <= 2, observed.keys
    for host, key_id in observed.apps.items():
        assert key_id is not None, f"{host}: the app is not healthy after the run"
        assert observed.keys.get(key_id) == "Active", f"{host} runs on {key_id}, which IAM holds as {observed.keys}"
        assert observed.files[host] == key_id, f"{host}: file holds {observed.files[host]}, app runs on {key_id}"


def assert_rotated(observed: Observed, old_id: str) -> str:
    """One Active new key, used by every app; the old key gone. Returns the new key id."""
    assert observed.run.rc == 0, explain(observed)
    entry = observed.entry
    assert entry["result"] == "rotated" and entry["old_key_id"] == old_id, entry
    new_id = entry["new_key_id"]
    assert new_id and new_id != old_id
    assert observed.keys == {new_id: "Active"}
    assert set(observed.apps.values()) == {new_id} and set(observed.files.values()) == {new_id}
    return new_id


def key_writes(observed: Observed) -> dict:
    return {k: v for k, v in observed.writes.items() if k not in TAG_WRITES}


def assert_rerun_changes_nothing(lab, user, consumers, key_id) -> None:
    """After a rotation, a re-run without faults finds nothing due and writes no key."""
    again = run_under(lab, user, consumers, name="rerun")
    assert again.run.rc == 0, explain(again)
    assert again.entry["result"] == "not_due", again.entry
    assert key_writes(again) == {}
    assert again.keys == {key_id: "Active"}
    assert set(again.apps.values()) == {key_id}
    assert_safe(again)


def converge(lab, user, consumers, old_id, **overrides) -> str:
    """A forced re-run without faults rotates to one Active new key used by every host."""
    again = run_under(lab, user, consumers, name="converge", rotate_force=True, **overrides)
    new_id = assert_rotated(again, old_id)
    assert_safe(again)
    return new_id


# --- throttling, 5xx, propagation -----------------------------------------------------------

def test_throttling_half_of_the_controllers_calls_for_the_whole_run(clean):
    lab = clean
    user, old = lab.seed()
    consumers = everywhere(lab, demo_consumer(user))
    observed = run_under(lab, user, consumers, name="throttle", rotate_force=True,
                         faults={"fault_scope": "controller", "throttle_rate": 0.5, "seed": 4})

    new_id = assert_rotated(observed, old["AccessKeyId"])
    assert_safe(observed)
    throttled = sum(codes.get("Throttling", 0) for codes in observed.faulted.values())
    assert throttled >= 10, observed.faulted
    assert {"iam:CreateAccessKey", "sts:GetCallerIdentity"} <= set(observed.counts), observed.counts
    # The apps' own STS calls were out of scope: not one probe saw an endpoint error.
    assert observed.totals["overall"]["errors"] == 0, observed.totals
    assert_rerun_changes_nothing(lab, user, consumers, new_id)


INTERNAL_FAILURE_AT = ("iam:ListAccessKeys", "iam:GetAccessKeyLastUsed", "iam:CreateAccessKey", "sts:GetCallerIdentity",
                       "iam:UpdateAccessKey", "iam:DeleteAccessKey")


def test_internal_failure_bursts_at_every_step(clean):
    """Three HTTP 500 in a row on the first calls, and again on every action the rotation makes."""
    lab = clean
    user, old = lab.seed()
    consumers = everywhere(lab, demo_consumer(user))
    burst = {"code": "InternalFailure", "status": 500, "message": "We encountered an internal error.", "count": 3}
    observed = run_under(lab, user, consumers, name="bursts", rotate_force=True,
                         faults={"fault_scope": "controller", "error_burst": 3,
                                 "fail_actions": {action: burst for action in INTERNAL_FAILURE_AT}})

    new_id = assert_rotated(observed, old["AccessKeyId"])
    assert_safe(observed)
    for action in INTERNAL_FAILURE_AT:
        assert observed.faulted.get(action, {}).get("InternalFailure", 0) >= 3, (action, observed.faulted)
    # A 500 on CreateAccessKey came before IAM created anything: retried, it made exactly one key.
    assert observed.counts["iam:CreateAccessKey"] == 4, observed.counts
    assert observed.totals["overall"]["errors"] == 0, observed.totals
    assert_rerun_changes_nothing(lab, user, consumers, new_id)


def first_probe_with(observed: Observed, key_id: str) -> float:
    times = [p["t"] for p in observed.timeline if p["key_id"] == key_id and p["outcome"] == "ok"]
    assert times, f"no probe ever saw {key_id}"
    return min(times)


def test_propagation_delay_of_30_s_is_waited_out(clean):
    lab = clean
    user, old = lab.seed()
    consumers = everywhere(lab, demo_consumer(user))
    # 120 s is the role's default rotate_verify_timeout_s (the lab lowers it to 60).
    observed = run_under(lab, user, consumers, name="delay", rotate_force=True,
                         rotate_verify_timeout_s=120, faults={"propagation_delay_s": 30})

    new_id = assert_rotated(observed, old["AccessKeyId"])
    assert_safe(observed)
    created_at = observed.scheduled[new_id]["created_at"]
    assert first_probe_with(observed, new_id) >= created_at + 30
    assert_rerun_changes_nothing(lab, user, consumers, new_id)


def test_propagation_that_flaps_is_not_taken_for_propagated(clean):
    """Refused, accepted for 1.5 s (at most two successes one second apart), refused again, then
    accepted for good: three successes in a row (rotate_verify_consecutive) come only after 8 s."""
    lab = clean
    user, old = lab.seed()
    consumers = everywhere(lab, demo_consumer(user))
    flap = [[0, "refuse"], [3, "accept"], [4.5, "refuse"], [8, "accept"]]
    observed = run_under(lab, user, consumers, name="flap", rotate_force=True,
                         faults={"propagation_flap": flap})

    new_id = assert_rotated(observed, old["AccessKeyId"])
    assert_safe(observed)
    assert observed.scheduled[new_id]["flap"] == [[float(t), state] for t, state in flap]
    # No host got the new key before the last flap: the verify waited it out.
    assert first_probe_with(observed, new_id) >= observed.scheduled[new_id]["created_at"] + 8
    assert_rerun_changes_nothing(lab, user, consumers, new_id)


# --- the user's keys are not as expected ------------------------------------------------------

def assert_stopped_before_any_write(lab, observed: Observed, before: dict, old_id: str) -> None:
    assert observed.run.rc != 0
    assert observed.writes == {}, observed.writes
    assert host_files(lab) == before, "a host file was changed"
    assert set(observed.apps.values()) == {old_id}
    assert observed.totals["overall"]["gaps"] == 0, "an app was restarted"
    assert not any(r["changed"] for r in observed.run.results), [r["task"] for r in observed.run.changed]
    # The refused run still leaves its report: what was refused, and that nothing changed.
    report = observed.run.report
    assert report and f"rekey.aws rotation {report['run_id']}" in observed.run.stdout, "this run wrote no report"
    assert not report["ok"], report
    assert "refused before any change" in report["message"], report["message"]
    assert all(u["result"] == "refused" and u["new_key_id"] is None for u in report["users"]), report["users"]


def test_two_active_keys_stop_before_any_write_then_retire_one(clean):
    lab = clean
    user, old = lab.seed()
    spare = lab.ep.iam().create_access_key(UserName=user)["AccessKey"]["AccessKeyId"]
    consumers = everywhere(lab, demo_consumer(user))
    before = host_files(lab)
    observed = run_under(lab, user, consumers, name="two-active", rotate_force=True)

    assert_stopped_before_any_write(lab, observed, before, old["AccessKeyId"])
    failure = observed.run.task(PLAN_TASK)["result"]["msg"]
    assert f"IAM user {user} has two Active access keys" in failure
    assert old["AccessKeyId"] in failure and spare in failure and "rotate_retire_key_ids" in failure
    assert observed.keys == {old["AccessKeyId"]: "Active", spare: "Active"}
    assert_safe(observed)

    # What the message asks for: name the key to retire. The fleet keeps the one it uses.
    again = run_under(lab, user, consumers, name="retire", rotate_retire_key_ids=[spare])
    assert again.run.rc == 0, explain(again)
    assert again.entry["result"] == "retired" and again.entry["old_key_id"] == spare
    assert again.keys == {old["AccessKeyId"]: "Active"}
    assert "iam:CreateAccessKey" not in again.writes
    assert_safe(again)


def deactivated_spare(lab, user: str, use: bool) -> str:
    """A second key of the user, Inactive; used once (an STS call) before deactivation if `use`."""
    spare = lab.ep.iam().create_access_key(UserName=user)["AccessKey"]
    if use:
        lab.ep.sts(spare["AccessKeyId"], spare["SecretAccessKey"], out_of_band=True).get_caller_identity()
    lab.ep.iam().update_access_key(UserName=user, AccessKeyId=spare["AccessKeyId"], Status="Inactive")
    return spare["AccessKeyId"]


def test_inactive_key_used_recently_stops_before_any_write(clean):
    lab = clean
    user, old = lab.seed()
    spare = deactivated_spare(lab, user, use=True)
    last_used = lab.ep.iam().get_access_key_last_used(AccessKeyId=spare)["AccessKeyLastUsed"]
    assert last_used.get("ServiceName") == "sts"
    consumers = everywhere(lab, demo_consumer(user))
    before = host_files(lab)
    observed = run_under(lab, user, consumers, name="inactive-used", rotate_force=True)

    assert_stopped_before_any_write(lab, observed, before, old["AccessKeyId"])
    failure = observed.run.task(PLAN_TASK)["result"]["msg"]
    assert f"IAM user {user} needs its second key slot" in failure and spare in failure
    assert "last used" in failure and "by sts in us-east-1" in failure and "rotate_prune_unused_days" in failure
    assert observed.keys == {old["AccessKeyId"]: "Active", spare: "Inactive"}
    assert_safe(observed)

    # What the message asks for: delete that key if nothing needs it, and run again.
    lab.ep.iam().delete_access_key(UserName=user, AccessKeyId=spare)
    converge(lab, user, consumers, old["AccessKeyId"])


def test_inactive_key_unused_for_long_is_pruned_and_the_user_rotated(clean):
    """moto cannot backdate a key, so "unused for long" is rotate_prune_unused_days: 0 (every
    Inactive key is old enough) on a key that was never used."""
    lab = clean
    user, old = lab.seed()
    spare = deactivated_spare(lab, user, use=False)
    consumers = everywhere(lab, demo_consumer(user))
    observed = run_under(lab, user, consumers, name="prune", rotate_force=True,
                         rotate_prune_unused_days=0)

    new_id = assert_rotated(observed, old["AccessKeyId"])
    assert_safe(observed)
    assert observed.entry["pruned_key_ids"] == [spare]
    # The prune and the old key, plus the lock's two permission probes.
    assert key_writes(observed) == {"iam:DeleteAccessKey": 3, "iam:CreateAccessKey": 1, "iam:UpdateAccessKey": 2}
    assert_rerun_changes_nothing(lab, user, consumers, new_id)


# --- IAM refuses ----------------------------------------------------------------------------

def test_limit_exceeded_on_create_touches_no_host(clean):
    lab = clean
    user, old = lab.seed()
    consumers = everywhere(lab, demo_consumer(user))
    before = host_files(lab)
    limit = {"code": "LimitExceeded", "status": 409, "message": "Cannot exceed quota for AccessKeysPerUser: 2"}
    observed = run_under(lab, user, consumers, name="limit", rotate_force=True,
                         faults={"fault_scope": "controller", "fail_actions": {"iam:CreateAccessKey": limit}})

    assert observed.run.rc != 0
    assert observed.faulted == {"iam:CreateAccessKey": {"LimitExceeded": 1}}
    failure = observed.failure()
    assert "iam:CreateAccessKey" in failure and "LimitExceeded" in failure and user in failure, failure
    assert observed.entry["result"] == "rolled_back" and observed.entry["hosts_not_reached"] == lab.hosts
    # With the lock's two permission probes (on a key id IAM never issues).
    assert key_writes(observed) == {"iam:CreateAccessKey": 1, "iam:UpdateAccessKey": 1, "iam:DeleteAccessKey": 1}
    assert observed.keys == {old["AccessKeyId"]: "Active"}
    assert host_files(lab) == before
    assert set(observed.apps.values()) == {old["AccessKeyId"]}
    assert observed.totals["overall"]["gaps"] == 0
    assert_safe(observed)
    converge(lab, user, consumers, old["AccessKeyId"])


def test_missing_iam_user_stops_before_any_write(clean):
    lab = clean
    user, old = lab.seed()
    ghost = f"ghost-{user}"
    consumers = everywhere(lab, demo_consumer(user))
    consumers[lab.hosts[0]] = consumers[lab.hosts[0]] + [sts_check_consumer(ghost, "ghost", "/etc/demoapp/ghost")]
    before = host_files(lab)
    observed = run_under(lab, user, consumers, name="ghost", rotate_force=True)

    assert_stopped_before_any_write(lab, observed, before, old["AccessKeyId"])
    failed = [r for r in observed.run.results if r["status"] == "failed"]
    assert failed, "no task failed"
    message = failed[0]["result"].get("msg", "")
    assert f"IAM user '{ghost}' does not exist" in message or f"IAM user {ghost} does not exist" in message, message
    assert observed.keys == {old["AccessKeyId"]: "Active"}
    assert_safe(observed)
    # The inventory fixed (the consumer of the missing user removed), the rotation goes through.
    converge(lab, user, everywhere(lab, demo_consumer(user)), old["AccessKeyId"])


def limited_admin(lab, denied_action: str) -> dict:
    """A real IAM user allowed every action but one, and its key: rotate_aws for it."""
    name = lab.ep.new_user("limited")
    policy = {"Version": "2012-10-17",
              "Statement": [{"Effect": "Allow", "NotAction": [denied_action], "Resource": "*"}]}
    lab.ep.iam().put_user_policy(UserName=name, PolicyName="all-but-one", PolicyDocument=json.dumps(policy))
    key = lab.ep.iam().create_access_key(UserName=name)["AccessKey"]
    return {"endpoint_url": lab.ep.endpoint_url, "region": lab.ep.region,
            "access_key": key["AccessKeyId"], "secret_key": key["SecretAccessKey"]}


@dataclass
class DeniedCase:
    user: str
    old_id: str
    first: Observed
    rerun: Observed


def denied_case(lab, denied_action: str) -> DeniedCase:
    """A forced rotation with an admin key that may not call denied_action, then a forced re-run with
    the full admin key (the operator fixed the policy)."""
    lab.ep.clear_faults()
    user, old = lab.seed()
    consumers = everywhere(lab, demo_consumer(user))
    first = run_under(lab, user, consumers, name=denied_action.replace(":", "-"), rotate_force=True,
                      rotate_aws=limited_admin(lab, denied_action))
    rerun = run_under(lab, user, consumers, name="denied-rerun", rotate_force=True)
    return DeniedCase(user, old["AccessKeyId"], first, rerun)


@pytest.fixture(scope="module")
def denied_delete(lab):
    return denied_case(lab, "iam:DeleteAccessKey")


@pytest.fixture(scope="module")
def denied_update(lab):
    return denied_case(lab, "iam:UpdateAccessKey")


def assert_refused_before_any_write(case: DeniedCase, action: str) -> None:
    """The lock's permission check (issue 11): refused before the lock, naming the action; only the
    two probes (on a key id IAM never issues) were sent; no key, tag or host changed."""
    first = case.first
    assert first.run.rc != 0, explain(first)
    lock_message = first.run.task("rekey.aws.rotate : Lock the users of this run")["result"]["msg"]
    assert lock_message.startswith("Nothing was changed") and f"{action} (IAM user '{case.user}')" in lock_message
    assert action in first.failure(), first.failure()
    assert first.writes == {"iam:UpdateAccessKey": 1, "iam:DeleteAccessKey": 1}, first.counts
    assert first.keys == {case.old_id: "Active"}
    assert set(first.apps.values()) == {case.old_id} and set(first.files.values()) == {case.old_id}
    assert first.entry["result"] == "refused", first.entry
    assert_safe(first)


def test_admin_without_delete_permission_is_refused_before_any_write(denied_delete):
    assert_refused_before_any_write(denied_delete, "iam:DeleteAccessKey")


def test_admin_without_delete_permission_then_rerun_converges(denied_delete):
    case = denied_delete
    new_id = assert_rotated(case.rerun, case.old_id)
    assert set(case.rerun.apps.values()) == {new_id}
    assert_safe(case.rerun)


def test_admin_without_update_permission_is_refused_before_any_write(denied_update):
    assert_refused_before_any_write(denied_update, "iam:UpdateAccessKey")


def test_admin_without_update_permission_then_rerun_converges(denied_update):
    case = denied_update
    new_id = assert_rotated(case.rerun, case.old_id)
    assert set(case.rerun.apps.values()) == {new_id}
    assert_safe(case.rerun)


# --- the inventory is wrong -----------------------------------------------------------------

MALFORMED = {
    "no-path": ({"path": None}, ["path null is not an absolute path on the host"]),
    "unknown-format": ({"format": "ini"}, ["format must be one of: credentials, env, template, ssm_parameter, secretsmanager_secret, got: ini"]),
    "mode-0644": ({"mode": "0644"}, ['mode "0644" is not allowed for a file holding a secret', 'at most "0600"']),
    "mode-644-unquoted": ({"mode": 644}, ["mode 644 is not a quoted octal string", 'write it as "0600"']),
}


@pytest.mark.parametrize("case", [
    "no-path",
    "unknown-format",
    "mode-0644",
    "mode-644-unquoted",
])
def test_malformed_inventory_is_refused_in_preflight(clean, case):
    lab = clean
    user, old = lab.seed()
    change, expected = MALFORMED[case]
    bad = demo_consumer(user)
    bad.update(change)
    if bad["path"] is None:
        del bad["path"]
    host = lab.hosts[1]
    consumers = everywhere(lab, demo_consumer(user))
    consumers[host] = [bad]
    before = host_files(lab)
    observed = run_under(lab, user, consumers, name=case, rotate_force=True)

    assert_stopped_before_any_write(lab, observed, before, old["AccessKeyId"])
    assert not [action for action in observed.counts if action.startswith("iam:")], observed.counts
    failure = observed.run.task(PREFLIGHT_TASK)["result"]["msg"]
    assert f"host {host}" in failure and 'consumer "demoapp"' in failure, failure
    for part in expected:
        assert part in failure, (part, failure)
    assert observed.keys == {old["AccessKeyId"]: "Active"}
    assert_safe(observed)


def test_malformed_inventory_once_fixed_converges(clean):
    lab = clean
    user, old = lab.seed()
    consumers = everywhere(lab, demo_consumer(user, mode="0644"))
    refused = run_under(lab, user, consumers, name="bad-mode", rotate_force=True)
    assert refused.run.rc != 0 and refused.writes == {}
    converge(lab, user, everywhere(lab, demo_consumer(user)), old["AccessKeyId"])
