"""The resume decision (_resume) at every recorded phase and key situation, each kill point of the
fleet test tests/integration/test_resume.py as a case."""
import pytest

from rotation_fixtures import NOW, OLD, NEW, OTHER, KILLED_RUN, RUN, ago, key, settings, state

from ansible_collections.rekey.aws.plugins.module_utils import _plan, _resume
from ansible_collections.rekey.aws.plugins.module_utils._rotation import PHASES

OLD_ACTIVE, OLD_INACTIVE = key(OLD, age=100), key(OLD, status="Inactive", age=100)
NEW_ACTIVE, NEW_INACTIVE = key(NEW, age=0), key(NEW, status="Inactive", age=0)
ORPHAN = key(OTHER, age=0, created=ago(seconds=60))  # created after the state (an hour ago), never used

# (id, recorded, keys, store holds (None: not asked), mode, discard_key_id, errors (substrings, in order))
CASES = [
    ("nothing_recorded", None, [OLD_ACTIVE], False, "none", None, []),
    ("rolled_back", state("rolled_back"), [OLD_ACTIVE], False, "none", None, []),
    # kill point after_plan: killed before CreateAccessKey, or right after it
    ("kill_after_plan_no_new_key", state("planned", new=None), [OLD_ACTIVE], False, "restart", None, []),
    ("kill_after_plan_orphan_created", state("planned", new=None), [OLD_ACTIVE, ORPHAN], False, "discard", OTHER, []),
    ("planned_other_key_used_is_not_an_orphan", state("planned", new=None),
     [OLD_ACTIVE, dict(ORPHAN, last_used_date=ago(seconds=5))], False, "restart", None, []),
    ("planned_other_key_older_than_state", state("planned", new=None), [OLD_ACTIVE, key(OTHER, age=2)], False,
     "restart", None, []),
    ("planned_inactive_key_is_not_an_orphan", state("planned", new=None),
     [OLD_ACTIVE, dict(ORPHAN, status="Inactive")], False, "restart", None, []),
    ("planned_without_updated_has_no_orphan", dict(state("planned", new=None), updated=None), [OLD_ACTIVE, ORPHAN],
     False, "restart", None, []),
    ("planned_old_no_longer_active", state("planned", new=None), [OLD_INACTIVE], False, "restart", None,
     ["IAM user app: run %s recorded a rotation from %s (phase planned), which is no longer an Active key. Nothing was "
      "changed: check the keys of the user, then remove the rekey:* state tags of the user." % (KILLED_RUN, OLD)]),
    # kill point key_created: the key id recorded, its secret stored or not
    ("kill_key_created_stored", state("key_created"), [OLD_ACTIVE, NEW_ACTIVE], True, "continue", None, []),
    ("kill_key_created_not_stored", state("key_created"), [OLD_ACTIVE, NEW_ACTIVE], False, "discard", NEW, []),
    ("key_created_new_gone", state("key_created"), [OLD_ACTIVE], False, "restart", None, []),
    ("key_created_new_inactive", state("key_created"), [OLD_ACTIVE, NEW_INACTIVE], True, "discard", NEW, []),
    # kill points key_stored, after_propagation (distributing) and mid_batch (distributing)
    ("kill_key_stored", state("key_stored"), [OLD_ACTIVE, NEW_ACTIVE], True, "continue", None, []),
    ("key_verified", state("key_verified"), [OLD_ACTIVE, NEW_ACTIVE], True, "continue", None, []),
    ("kill_after_propagation", state("distributing"), [OLD_ACTIVE, NEW_ACTIVE], True, "continue", None, []),
    ("kill_mid_batch", state("distributing"), [OLD_ACTIVE, NEW_ACTIVE], True, "continue", None, []),
    # ... the store not asked (recorded after it was written): read as held
    ("key_stored_store_not_asked", state("key_stored"), [OLD_ACTIVE, NEW_ACTIVE], None, "continue", None, []),
    ("distributing_store_not_asked", state("distributing"), [OLD_ACTIVE, NEW_ACTIVE], None, "continue", None, []),
    # ... the store lost the secret (a vault file in a thrown-away AWX container): before any host has
    # the key it is deleted; while it was being distributed the hosts go back to the old key first.
    ("key_created_store_lost", state("key_created"), [OLD_ACTIVE, NEW_ACTIVE], False, "discard", NEW, []),
    ("key_stored_store_lost", state("key_stored"), [OLD_ACTIVE, NEW_ACTIVE], False, "discard", NEW, []),
    ("key_verified_store_lost", state("key_verified"), [OLD_ACTIVE, NEW_ACTIVE], False, "discard", NEW, []),
    ("distributing_store_lost", state("distributing"), [OLD_ACTIVE, NEW_ACTIVE], False, "revert", NEW, []),
    ("distributing_store_lost_old_inactive", state("distributing"), [OLD_INACTIVE, NEW_ACTIVE], False, "finish",
     None, []),
    ("distributing_store_lost_new_gone", state("distributing"), [OLD_ACTIVE], False, "restart", None, []),
    ("distributing_store_lost_old_gone", state("distributing"), [NEW_ACTIVE], False, "none", None,
     ["but %s no longer exists" % OLD]),
    # from distributed on every host has the key and nothing reads the store: it is not asked
    ("distributed_store_lost", state("distributed"), [OLD_ACTIVE, NEW_ACTIVE], False, "finish", None, []),
    ("old_deactivated_store_lost", state("old_deactivated"), [OLD_INACTIVE, NEW_ACTIVE], False, "finish", None, []),
    ("key_stored_new_gone", state("key_stored"), [OLD_ACTIVE], False, "restart", None, []),
    ("distributing_new_deactivated_by_rollback", state("distributing"), [OLD_ACTIVE, NEW_INACTIVE], False,
     "discard", NEW, []),
    ("distributing_old_inactive", state("distributing"), [OLD_INACTIVE, NEW_ACTIVE], False, "finish", None, []),
    ("distributing_old_gone", state("distributing"), [NEW_ACTIVE], False, "none", None,
     ["IAM user app: run %s recorded its rotation from %s to %s at phase distributing, but %s no longer exists, so "
      "hosts not yet moved to %s may hold no working key. Nothing was changed: check the hosts, then remove the rekey:* "
      "state tags of the user." % (KILLED_RUN, OLD, NEW, OLD, NEW)]),
    ("key_stored_new_gone_old_inactive", state("key_stored"), [OLD_INACTIVE], False, "restart", None,
     ["which is no longer an Active key"]),
    # kill points after_last_batch (distributed), after_deactivation and after_deletion
    ("kill_after_last_batch", state("distributed"), [OLD_ACTIVE, NEW_ACTIVE], False, "finish", None, []),
    ("kill_after_deactivation", state("old_deactivated"), [OLD_INACTIVE, NEW_ACTIVE], False, "finish", None, []),
    ("kill_after_deletion_at_old_deactivated", state("old_deactivated"), [NEW_ACTIVE], False, "done", None, []),
    ("kill_after_deletion_at_old_retired", state("old_retired"), [NEW_ACTIVE], False, "done", None, []),
    ("distributed_new_inactive", state("distributed"), [OLD_ACTIVE, NEW_INACTIVE], False, "none", None,
     ["IAM user app: run %s recorded that every host got %s (phase distributed), but that key is Inactive. Nothing was "
      "changed: check the hosts, then remove the rekey:* state tags of the user." % (KILLED_RUN, NEW)]),
    ("old_deactivated_new_gone", state("old_deactivated"), [OLD_INACTIVE], False, "none", None,
     ["but that key is gone"]),
    # Not written by rekey.aws (the role's template would discard the old key here).
    ("same_key_recorded_old_and_new", state("key_created", new=OLD), [OLD_ACTIVE], False, "none", None,
     ["IAM user app: run %s recorded %s as both the old and the new key of its rotation (phase key_created): expected "
      "two different keys. Nothing was changed: check the hosts, then remove the rekey:* state tags of the user."
      % (KILLED_RUN, OLD)]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_resume_decision(case):
    _id, recorded, keys, holds, mode, discard, errors = case
    r, found = _resume.resume_user("app", recorded, keys, holds)
    assert (r["mode"], r["discard_key_id"]) == (mode, discard)
    assert len(found) == len(errors)
    for message, part in zip(found, errors):
        assert part in message
    if mode == "none":
        assert r["message"] == ""
    else:
        said = "resuming rotation %s of user app from phase %s: " % (KILLED_RUN, recorded["phase"])
        assert r["message"].startswith(said)


@pytest.mark.parametrize("mode,text", [
    ("restart", "its new key does not exist, so a new key is created"),
    ("revert", "the secret store no longer holds its new key %s, so the hosts that got it go back to the old key %s "
     "from the backups of run %s, %s is deleted and a new key is created" % (NEW, OLD, KILLED_RUN, NEW)),
    ("continue", "its new key %s is verified again and written to every host" % NEW),
    ("finish", "every host has its new key %s: the fleet is re-checked and the old key %s retired" % (NEW, OLD)),
    ("done", "the old key %s is gone, so only the state is cleared" % OLD),
])
def test_resume_messages(mode, text):
    r = {"mode": mode, "run_id": KILLED_RUN, "phase": "distributing", "old_key_id": OLD, "new_key_id": NEW,
         "discard_key_id": NEW}
    assert _resume.message("app", r) == "resuming rotation %s of user app from phase distributing: %s" % (KILLED_RUN,
                                                                                                          text)


@pytest.mark.parametrize("phase,text", [
    ("planned", "its new key %s never reached the secret store nor any host, so it is deleted and a new key is "
                "created" % NEW),
    ("key_created", "its new key %s never reached the secret store nor any host, so it is deleted and a new key is "
                    "created" % NEW),
    ("key_stored", "the secret store no longer holds its new key %s, which no host has yet, so it is deleted and a "
                   "new key is created" % NEW),
])
def test_discard_messages_say_why(phase, text):
    r = {"mode": "discard", "run_id": KILLED_RUN, "phase": phase, "old_key_id": OLD, "new_key_id": NEW,
         "discard_key_id": NEW}
    assert _resume.message("app", r) == "resuming rotation %s of user app from phase %s: %s" % (KILLED_RUN, phase,
                                                                                                text)


def test_only_the_phases_that_need_the_secret_ask_the_store():
    assert _resume.STORE_PHASES == ("key_created", "key_stored", "key_verified", "distributing")


def test_unknown_recorded_phase_is_bad_input():
    with pytest.raises(ValueError, match=r"IAM user app: the recorded phase 'half_done' is not a phase rekey.aws "
                                         r"records: expected one of planned, key_created"):
        _resume.resume_user("app", state("half_done"), [OLD_ACTIVE], False)


def test_keys_seen_hide_the_resumed_new_key_and_make_the_old_one_due():
    out = _resume.resume(["app"], {"app": state("distributing")}, [key(OLD, age=3), NEW_ACTIVE], {}, 90)
    assert [(k["access_key_id"], k["status"], k["age_days"]) for k in out["keys_seen"]] == [(OLD, "Active", 90)]


def test_keys_seen_of_a_done_rotation_are_its_new_key_only():
    out = _resume.resume(["app"], {"app": state("old_retired")}, [key(OTHER, status="Inactive"), key(NEW, age=1)], {},
                         90)
    assert [(k["access_key_id"], k["age_days"]) for k in out["keys_seen"]] == [(NEW, 90)]


def test_keys_seen_of_an_inactive_old_key_being_finished_read_it_active():
    out = _resume.resume(["app"], {"app": state("old_deactivated")}, [OLD_INACTIVE, NEW_ACTIVE], {}, 90)
    assert [(k["access_key_id"], k["status"]) for k in out["keys_seen"]] == [(OLD, "Active")]


# Each kill point through the whole decision: what the re-run does first.
KILL_POINTS = [
    ("after_plan", state("planned", new=None), [OLD_ACTIVE], {}, "rotate", "planned", None, [("create", "app", None)]),
    ("after_plan_key_made", state("planned", new=None), [OLD_ACTIVE, ORPHAN], {}, "rotate", "planned", None,
     [("discard", "app", OTHER), ("create", "app", None)]),
    ("key_created", state("key_created"), [OLD_ACTIVE, NEW_ACTIVE], {"app": True}, "rotate", "key_stored", NEW, []),
    ("key_created_unstored", state("key_created"), [OLD_ACTIVE, NEW_ACTIVE], {}, "rotate", "planned", None,
     [("discard", "app", NEW), ("create", "app", None)]),
    ("key_stored", state("key_stored"), [OLD_ACTIVE, NEW_ACTIVE], {}, "rotate", "key_stored", NEW, []),
    ("after_propagation", state("distributing"), [OLD_ACTIVE, NEW_ACTIVE], {}, "rotate", "key_stored", NEW, []),
    ("mid_batch", state("distributing"), [OLD_ACTIVE, NEW_ACTIVE], {}, "rotate", "key_stored", NEW, []),
    ("mid_batch_store_lost", state("distributing"), [OLD_ACTIVE, NEW_ACTIVE], {"app": False}, "rotate", "planned",
     None, [("discard", "app", NEW), ("create", "app", None)]),
    ("key_stored_store_lost", state("key_stored"), [OLD_ACTIVE, NEW_ACTIVE], {"app": False}, "rotate", "planned",
     None, [("discard", "app", NEW), ("create", "app", None)]),
    ("after_last_batch", state("distributed"), [OLD_ACTIVE, NEW_ACTIVE], {}, "rotate", "distributed", NEW, []),
    ("after_deactivation", state("old_deactivated"), [OLD_INACTIVE, NEW_ACTIVE], {}, "rotate", "distributed", NEW, []),
    ("after_deletion", state("old_deactivated"), [NEW_ACTIVE], {}, "none", "planned", None, []),
]


@pytest.mark.parametrize("case", KILL_POINTS, ids=[c[0] for c in KILL_POINTS])
def test_kill_point_rerun(case):
    _id, recorded, keys, holds, action, phase, new, first_writes = case
    hostvars = {"web1": {"rotate_consumers": [{"name": "app", "iam_user": "app", "path": "/etc/app/credentials",
                                               "service": "app", "health_url": "http://127.0.0.1/health"}]}}
    plan = _plan.decide(["app"], keys, {"app": recorded}, holds, settings(), NOW, ["web1"], ["web1"], hostvars, RUN)
    assert plan["errors"] == []
    app = plan["users"]["app"]
    assert (app["action"], app["phase"], app["new_key_id"]) == (action, phase, new)
    writes = [w for w in _plan.planned_writes(plan) if w[0] in ("discard", "prune", "create")]
    assert writes == first_writes
    # Hosts get the key unless every host has it already.
    assert plan["targets"] == (["web1"] if action == "rotate" and phase != "distributed" else [])
    keep = recorded["phase"] in ("distributing", "distributed", "old_deactivated") and phase != "planned"
    assert _plan.keep_new_users(plan["users"]) == (["app"] if keep else [])
    # Only a rotation whose lost key was being distributed puts its hosts back first.
    reverting = recorded["phase"] == "distributing" and holds.get("app") is False
    assert _plan.todo(plan["users"], settings(), plan["entries"])["revert_hosts"] == (["web1"] if reverting else [])


def test_every_recorded_phase_has_a_case():
    assert {c[1]["phase"] for c in CASES if c[1]} == set(PHASES)
