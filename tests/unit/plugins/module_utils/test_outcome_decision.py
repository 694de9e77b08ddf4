"""The outcome of each host after distribute and of each user after finish (_outcome), and what
prepare's steps do to the plan (_prepare). One host's rollout is in test_host_rollout."""
import pytest

from rotation_fixtures import NOW, OLD, NEW, KILLED_RUN, consumer

from ansible_collections.rekey.aws.plugins.module_utils import _coerce, _outcome, _prepare
from ansible_collections.rekey.aws.plugins.module_utils._keys import iso

CUTOVER = "2024-05-31T12:00:00+00:00"


def user(action="rotate", **fields):
    p = {"user_name": "app", "action": action, "old_key_id": OLD, "new_key_id": NEW, "target_key_id": NEW,
         "phase": "distributing", "reason": ""}
    p.update(fields)
    return p


def entry(host="web1", name="app", **fields):
    e = dict(consumer(name), host=host, health_status=200, health_expect_key_id=False, health_command="",
             target_key_id=NEW, old_key_id=OLD)
    e.update(fields)
    return e


# ---- hosts ----

@pytest.mark.parametrize("statuses,stop", [
    ([], False), (["updated", "updated"], False), (["updated", "failed"], True), (["rolled_back"], True),
    (["started"], True),
])
def test_rollout_stops_once_a_host_is_not_updated(statuses, stop):
    outcomes = dict(("h%d" % i, {"status": s}) for i, s in enumerate(statuses))
    outcomes["unseen"] = {}
    assert _outcome.stop_rollout(outcomes) is stop


def test_gather_and_rollout_ok():
    outcomes = _outcome.gather(["web1", "web2"], {"web1": {"status": "updated", "phase": "checked", "failure": {}}})
    assert outcomes["web2"] == {"status": "not_reached", "phase": "none", "failure": {}}
    assert _outcome.rollout_ok({}, outcomes) is False
    assert _outcome.rollout_ok({}, {"web1": {"status": "updated"}}) is True
    assert _outcome.rollout_ok({"task": "t", "msg": "m"}, {"web1": {"status": "updated"}}) is False
    assert _outcome.rollout_ok({}, {}) is True


@pytest.mark.parametrize("text,length,out", [
    ("short", 10, "short"), ("a" * 15, 10, "a" * 15), ("word " * 10, 20, "word word word..."),
    ("x" * 30, 10, "x" * 7 + "..."),
])
def test_truncate_as_jinja(text, length, out):
    assert _coerce.truncate(text, length) == out


# ---- users after finish ----

def test_old_key_used_after_the_cutover_stays_active():
    users = {"app": user(), "billing": user(old_key_id="AKIAOTHER00000000003")}
    keys_after = [{"access_key_id": OLD, "last_used_date": "2024-05-31T12:00:01+00:00", "last_used_service": "s3",
                   "last_used_region": None},
                  {"access_key_id": "AKIAOTHER00000000003", "last_used_date": CUTOVER}]
    assert _outcome.old_keys_in_use(users, ["app", "billing"], keys_after, CUTOVER) == {
        "app": "IAM user app: the old key %s was used at 2024-05-31T12:00:01+00:00 by s3 in an unknown region, after the "
               "cutover at %s: something outside the inventory still uses it. It stays Active; the hosts keep the new "
               "key. Find that consumer, move it to %s, then retire the old key with rotate_retire_key_ids."
               % (OLD, CUTOVER, NEW)}


def test_deactivated_and_in_use():
    assert _outcome.deactivated(["app", "b"], {"b": "in use"}, iso(NOW)) == {
        "app": {"phase": "old_deactivated", "deactivated_at": "2024-05-31T12:00:00+00:00"},
        "b": {"phase": "distributed", "result": "old_key_in_use", "message": "in use"}}


def test_retired_rotated_retired_or_reactivated():
    users = {"app": user(), "named": user("retire", new_key_id=None, target_key_id="AKIAKEEP000000000004"),
             "bad": user(), "busy": user()}
    failing = [{"iam_user": "bad", "output": "web1 app: health check failed"}]
    out = _outcome.retired(users, ["app", "named", "bad", "busy"], {"busy": "x"}, failing)
    assert out["app"] == {"phase": "old_retired", "result": "rotated", "message": ""}
    assert out["named"] == {"phase": "old_retired", "result": "retired", "message": ""}
    assert out["bad"] == {"phase": "distributed", "result": "failed_after_deactivation", "failures": failing,
                          "message": "IAM user bad: after deactivating %s, web1 app: health check failed. The old key "
                                     "was reactivated; the hosts keep %s." % (OLD, NEW)}
    assert "busy" not in out
    assert _outcome.done_users(["app", "named", "bad", "busy"], {"busy": "x"}, failing) == ["app", "named"]


def test_unexpected_failure_while_retiring():
    users = {"app": user(phase="old_deactivated"), "checked": user(phase="old_deactivated", old_key_checked=True),
             "ended": user(result="rotated"), "busy": user()}
    assert _outcome.unfinished(users, ["app", "checked", "ended", "busy"], {"busy": "x"}) == ["app"]
    failed_at = _outcome.retire_failed_at("Delete the old keys", {"msg": "One or more items failed", "results": [
        {"failed": True, "msg": "AccessDenied"}, {"failed": False}]})
    assert failed_at == 'retiring the old key failed at "Delete the old keys": AccessDenied'
    out = _outcome.retire_failure(users, ["app", "checked"], [{"user": "app", "succeeded": True, "changed": True}],
                                  failed_at)
    assert out["app"] == {"result": "failed", "phase": "distributed",
                          "message": "IAM user app: %s. The old key %s was reactivated; the hosts keep %s." % (
                              failed_at, OLD, NEW)}
    assert out["checked"] == {"result": "failed", "message": "IAM user checked: %s. The old key %s stays Inactive: "
                                                             "every host passed its check without it. Run again to "
                                                             "delete it." % (failed_at, OLD)}
    out = _outcome.retire_failure(users, [], [{"user": "app", "succeeded": False, "changed": False, "msg": "throttled"}],
                                  "f")
    assert out["app"]["phase"] == "old_deactivated" and out["app"]["message"].endswith(
        "could not be reactivated: throttled; the hosts keep %s." % NEW)
    assert _outcome.retire_failed_at("T", {}) == 'retiring the old key failed at "T": failed'


OUTCOMES = {"web1": {"status": "updated", "phase": "checked"}, "web2": {"status": "started", "phase": "writing"},
            "web3": {"status": "started", "phase": "started"}, "web4": {"status": "not_reached", "phase": "none"},
            "web5": {"status": "failed", "phase": "none"}}


def test_hosts_put_back_after_a_failed_rollout():
    assert _outcome.rollback_hosts(OUTCOMES) == ["web1", "web2", "web3"]
    assert _outcome.restored(OUTCOMES, ["web2"], ["web2: restoring /etc/app: read-only", "web1x: other"]) == {
        "web1": {"status": "rolled_back", "rollback": []},
        "web2": {"status": "rollback_failed", "rollback": ["web2: restoring /etc/app: read-only"]},
        "web3": {"status": "failed", "rollback": []}}


def test_new_key_deleted_only_when_no_host_may_hold_it():
    users = {"app": user(), "billing": user(), "resumed": user(), "none": user(new_key_id=None)}
    entries = [entry("web1", iam_user="app"), entry("web2", iam_user="billing"), entry("web2", iam_user="resumed")]
    outcomes = {"web1": {"status": "rolled_back"}, "web2": {"status": "rollback_failed"}}
    assert _outcome.doubtful_hosts(outcomes) == ["web2"]
    assert _outcome.discardable_new_keys(users, entries, outcomes, ["resumed"]) == ["app"]


def test_users_after_a_failed_rollout():
    users = {"app": user(), "kept": user(), "none": user(new_key_id=None, phase="planned"),
             "named": user("retire", new_key_id=None)}
    out = _outcome.rolled_back(users, ["app"], ["web2"])
    assert out["app"] == {"result": "rolled_back", "phase": "rolled_back",
                          "message": "IAM user app: rolled back; every host holds the old key %s, which stayed Active, "
                                     "and the new key %s was deleted." % (OLD, NEW)}
    assert out["kept"] == {"result": "rollback_incomplete", "phase": "distributing",
                           "message": "IAM user kept: the new key %s is kept Active because web2 may hold it; the old "
                                      "key %s is still Active. Check those hosts, then run again." % (NEW, OLD)}
    assert out["none"] == {"result": "rolled_back", "phase": "rolled_back",
                           "message": "IAM user none: rolled back; every host holds the old key %s, which stayed "
                                      "Active." % OLD}
    assert "named" not in out


def test_resumed_rotation_keeps_its_new_key_after_a_failed_rollout():
    users = {"app": user(resume={"run_id": KILLED_RUN}), "gone": user("none")}
    assert _outcome.kept_new_keys(users, ["app", "gone"]) == {"app": {
        "result": "rollback_incomplete",
        "message": "IAM user app: resumed rotation %s did not complete; its new key %s stays Active next to the old key "
                   "%s because hosts updated by the killed run may hold it. Fix what failed, then run again to resume."
                   % (KILLED_RUN, NEW, OLD)}}


@pytest.mark.parametrize("resume,phase", [
    (None, "distributed"), ({"mode": "continue", "phase": "distributing"}, "distributed"),
    ({"mode": "finish", "phase": "old_deactivated"}, "old_deactivated"),
])
def test_phase_recorded_when_every_host_has_the_key(resume, phase):
    assert _outcome.distributed_phase(user(resume=resume)) == phase


def test_merge_is_per_user_and_shallow():
    users = {"app": user(), "b": user()}
    merged = _outcome.merge(users, {"app": {"phase": "old_retired"}})
    assert merged["app"]["phase"] == "old_retired" and merged["b"] is users["b"] and users["app"]["phase"] == "distributing"


# ---- prepare ----

@pytest.mark.parametrize("created,recorded,stored,problem", [
    ({"failed": True, "msg": "LimitExceeded"}, None, None, "IAM user app: LimitExceeded"),
    ({"failed": True}, None, None, "IAM user app: access_key failed"),
    ({"created": False, "access_key_id": NEW}, None, None,
     "IAM user app: an Active key younger than the old one appeared (%s): another run may be rotating app" % NEW),
    ({"created": True, "access_key_id": NEW}, {"failed": True, "msg": "Throttling"}, None,
     "IAM user app: recording the new key %s failed: Throttling" % NEW),
    ({"created": True, "access_key_id": NEW}, {}, {"failed": True}, "IAM user app: key_store failed"),
    ({"created": True, "access_key_id": NEW}, {}, {}, None),
], ids=["create_failed", "create_failed_no_msg", "not_created", "record_failed", "store_failed", "all_good"])
def test_create_problem(created, recorded, stored, problem):
    assert _prepare.create_problem("app", created, recorded, stored) == problem


def test_prepare_steps_follow_the_recorded_phases():
    assert _prepare.created({"created": True, "access_key_id": NEW}) == {"new_key_id": NEW, "target_key_id": NEW,
                                                                         "phase": "key_created"}
    assert _prepare.created({"failed": True}) == {"new_key_id": None, "target_key_id": None, "phase": "planned"}
    assert _prepare.stored() == {"phase": "key_stored"}
    assert _prepare.new_key_lost(user()) == {"new_key_id": None, "target_key_id": None, "deleted_key_id": NEW,
                                             "phase": "rolled_back"}
    users = {"app": user(phase="key_stored"), "b": user(phase="key_stored", new_key_id="AKIAB00000000000000B")}
    results = [{"access_key_id": NEW, "seconds": 1.5, "attempts": 4}]
    assert _prepare.verified(users, ["app", "b"], results) == {
        "app": {"phase": "key_verified", "verify_seconds": 1.5, "verify_attempts": 4}}
    assert _prepare.distributing(["app"]) == {"app": {"phase": "distributing"}}
    assert _prepare.store_mismatch(results, users, ["app"]) is None
    assert _prepare.store_mismatch(results, users, ["app", "b"]) == (
        "The secret store holds %s but this run created %s, AKIAB00000000000000B: another run may be writing to it."
        % (NEW, NEW))
