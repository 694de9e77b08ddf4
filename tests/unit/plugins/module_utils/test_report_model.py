"""The report model and the human summary (_report). The scenarios are written in the phases the
role used before the engine moved to Python, translated here to the phases recorded in the IAM tags
(which the report now names)."""
import copy

import pytest

from rotation_fixtures import NOW, OLD, NEW, OTHER, RUN, KILLED_RUN

from ansible_collections.rekey.aws.plugins.module_utils import _report

# The role's plan phases (before the port) and the phase the Python port records for the same moment.
ROLE_PHASE = {"planned": "planned", "created": "key_created", "stored": "key_stored", "verified": "distributing",
              "distributed": "distributed", "old_key_deactivated": "old_deactivated",
              "old_key_checked": "old_deactivated", "old_key_deleted": "old_retired", "old_key_inactive": "old_retired",
              "old_key_reactivated": "distributed", "old_key_in_use": "distributed", "new_key_deleted": "rolled_back",
              "not_created": "rolled_back", "new_key_kept": "distributing"}
RESUMED = {"mode": "finish", "phase": "distributed", "run_id": KILLED_RUN, "old_key_id": OLD, "new_key_id": NEW,
           "discard_key_id": None, "message": "resuming rotation %s of user app from phase distributed: ..." % KILLED_RUN}


def u(name, action="rotate", phase="old_key_deleted", **fields):
    p = {"user_name": name, "action": action, "reason": "key %s is 100 days old" % OLD, "old_key_id": OLD,
         "new_key_id": NEW if action == "rotate" else None, "target_key_id": NEW if action == "rotate" else OTHER,
         "prune_key_ids": [], "phase": phase, "hosts": ["web1", "web2"], "resume": {"mode": "none"}}
    p.update(fields)
    return p


UPDATED = {"status": "updated", "phase": "checked", "failure": {}}
# (id, role plan users, outcomes, prepare failure, check mode)
SCENARIOS = [
    ("rotated", [u("app", result="rotated", verify_seconds=2.5, prune_key_ids=[OTHER])],
     {"web1": UPDATED, "web2": UPDATED}, {}, False),
    ("not_due", [u("app", "none", new_key_id=None, target_key_id=OLD, phase="planned", hosts=[])], {}, {}, False),
    ("retired_named_key", [u("app", "retire", result="retired")], {}, {}, False),
    ("check_mode", [u("app", phase="planned", new_key_id=None)], {}, {}, True),
    ("refused", [u("app", phase="planned", new_key_id=None, result="refused")], {},
     {"task": "Stop before any write when the plan has problems", "msg": "IAM user app has two Active...",
      "refused": True}, False),
    ("verification_failed", [u("app", phase="created")], {},
     {"task": "Stop when a new key did not authenticate in time", "msg": "timed out"}, False),
    ("rolled_back", [u("app", phase="new_key_deleted", result="rolled_back", message="IAM user app: rolled back.")],
     {"web1": {"status": "rolled_back", "phase": "writing", "failure": {"task": "Check", "msg": "web1 app: 503"},
               "rollback": []}}, {}, False),
    ("rollback_incomplete", [u("app", phase="new_key_kept", result="rollback_incomplete", message="kept")],
     {"web1": {"status": "rollback_failed", "phase": "writing", "failure": {"msg": "web1 app: 503"},
               "rollback": ["web1: restoring /etc/app: read-only"]},
      "web2": {"status": "started", "phase": "started", "failure": {}}}, {}, False),
    ("store_failed", [u("app", phase="new_key_deleted", new_key_id=None, deleted_key_id=NEW, result="rolled_back",
                        hosts=[])], {}, {"task": "Stop when no key could be created", "msg": "vault"}, False),
    ("not_created", [u("app", phase="not_created", new_key_id=None, result="rolled_back", hosts=[])], {},
     {"task": "t", "msg": "m"}, False),
    ("failed_after_deactivation", [u("app", phase="old_key_reactivated", result="failed_after_deactivation",
                                     failures=[{"output": "web2 app: 503"}], message="after deactivating")],
     {"web1": UPDATED, "web2": UPDATED}, {}, False),
    ("old_key_in_use", [u("app", phase="old_key_in_use", result="old_key_in_use", message="used by s3")],
     {"web1": UPDATED, "web2": UPDATED}, {}, False),
    ("reactivation_failed", [u("app", phase="old_key_deactivated", result="failed", message="could not")],
     {"web1": UPDATED, "web2": UPDATED}, {}, False),
    ("checked_then_delete_failed", [u("app", phase="old_key_checked", result="failed", message="stays Inactive")],
     {"web1": UPDATED, "web2": UPDATED}, {}, False),
    ("retire_never_started", [u("app", "retire", phase="planned")], {}, {"task": "t", "msg": "m"}, False),
    # A rotation resumed at its finish: its hosts are not in the rollout, so they read "not reached".
    ("resumed_finish", [u("app", phase="old_key_deleted", result="rotated", resume=RESUMED)], {}, {}, False),
    ("two_users_one_failed", [u("app", result="rotated"), u("billing", phase="new_key_deleted", result="rolled_back",
                                                            message="billing rolled back", hosts=["web2"])],
     {"web1": UPDATED, "web2": {"status": "failed", "phase": "none", "failure": {"msg": "web2: unreachable"}}},
     {}, False),
]
RUN_TIMES = {"run_id": RUN, "started_at": "2024-05-31T11:58:00+00:00"}


def python_users(role_users):
    out = {}
    for p in role_users:
        p = copy.deepcopy(p)
        p["phase"] = ROLE_PHASE[p["phase"]]
        out[p["user_name"]] = p
    return out


@pytest.mark.parametrize("retire", ["delete", "deactivate"])
@pytest.mark.parametrize("case", SCENARIOS, ids=[c[0] for c in SCENARIOS])
def test_every_scenario_reports_each_user_once_and_says_why_it_failed(case, retire):
    _id, role_users, outcomes, failure, check_mode = case
    report = report_of(role_users, outcomes, failure, check_mode, retire)
    assert [e["user_name"] for e in report["users"]] == [p["user_name"] for p in role_users]
    assert report["ok"] == (not failure and all(e["ok"] for e in report["users"]))
    lines = _report.summary_lines(report, "/r/rotate.json")
    assert lines[0].startswith("rekey.aws rotation %s" % RUN) and ("OK in" in lines[0]) == report["ok"]
    assert lines[-1] == "report: /r/rotate.json" + (" (not written in check mode)" if check_mode else "")
    if not report["ok"]:
        assert report["message"].startswith("rotation failed: ") and report["message"] in lines


def report_of(users, outcomes=None, failure=None, check_mode=False, retire="delete"):
    run = dict(RUN_TIMES, started_epoch=NOW.timestamp() - 100, prepared_epoch=NOW.timestamp() - 60)
    return _report.report(python_users(users), outcomes or {}, failure or {}, run, check_mode, retire, NOW)


def test_durations_and_times_come_from_the_run_and_now():
    r = report_of([u("app", result="rotated")], {"web1": UPDATED, "web2": UPDATED})
    assert r["durations_s"] == {"prepare": 40.0, "distribute": 0.0, "finish": 60.0, "total": 100.0}
    assert (r["finished_at"], r["ok"], r["message"]) == ("2024-05-31T12:00:00+00:00", True, "ok")


@pytest.mark.parametrize("role_users,outcomes,result,old_final,new_final", [
    ([u("app", result="rotated")], {"web1": UPDATED, "web2": UPDATED}, "rotated", "deleted", "Active"),
    ([u("app", "retire", result="retired")], {}, "retired", "deleted", "Active"),
    ([u("app", phase="new_key_deleted", result="rolled_back")], {}, "rolled_back", "Active", "deleted"),
    ([u("app", phase="old_key_checked", result="failed")], {}, "failed", "Inactive", "Active"),
    ([u("app", phase="verified")], {}, "failed", "Active", "Active"),
    ([u("app", "none", phase="planned", new_key_id=None)], {}, "not_due", "Active", None),
])
def test_user_result_and_final_key_states(role_users, outcomes, result, old_final, new_final):
    [entry] = report_of(role_users, outcomes)["users"]
    found = (entry["result"], entry["old_key_final_state"], entry["new_key_final_state"])
    assert found == (result, old_final, new_final)


def test_failed_hosts_and_message_say_each_failure_once():
    r = report_of(SCENARIOS[-1][1], SCENARIOS[-1][2])
    # web2 holds keys of both users: its failure is listed under each, and said once in the message.
    assert r["message"] == "rotation failed: web2: unreachable | billing rolled back"
    assert r["users"][0]["hosts_failed"] == r["users"][1]["hosts_failed"]
    assert r["users"][1]["hosts_failed"] == [{"host": "web2", "status": "failed", "error": "web2: unreachable",
                                              "rollback_problems": []}]


def test_complete_adds_resumed_lock_and_finish_failure():
    users = python_users([u("app", result="rotated", resume=RESUMED), u("b", "none", phase="planned")])
    r = _report.report(users, {}, {}, dict(RUN_TIMES, started_epoch=0), False, "delete", NOW)
    done = _report.complete(r, users, ["app"], True, {})
    assert done["resumed"] == [RESUMED]
    assert done["users"][0]["resumed_from"] == {"run_id": KILLED_RUN, "phase": "distributed", "mode": "finish",
                                                "message": RESUMED["message"]}
    assert done["users"][1]["resumed_from"] is None
    assert done["lock"] == {"run_id": RUN, "users": ["app"], "released": True}
    assert _report.summary_lines(done, "/r.json")[-1] == "resumed: " + RESUMED["message"]
    failed = _report.complete(r, users, [], False, {"task": "Unlock", "msg": "AccessDenied"})
    assert (failed["ok"], failed["message"]) == (False, 'rotation failed: finish failed at "Unlock": AccessDenied')


def test_summary_lines_and_stats():
    r = report_of(SCENARIOS[-1][1], SCENARIOS[-1][2])
    lines = _report.summary_lines(r, "/r.json")
    assert lines[0] == ("rekey.aws rotation %s: FAILED in 100.0 s (prepare 40.0 s, distribute 0.0 s, finish 60.0 s)"
                        % RUN)
    assert lines[1] == "ok     app: rotated (%s -> %s; old key deleted, new key Active), phase old_retired" % (OLD, NEW)
    assert "       failed: web2 (failed): web2: unreachable" in lines and lines[-1] == "report: /r.json"
    billing = _report.stats(r, "/r.json")["users"]["billing"]
    assert billing == {"result": "rolled_back", "old_key_id": OLD, "new_key_id": NEW}


def test_a_refused_run_reports_every_user_refused():
    r = report_of([u("app", phase="planned", new_key_id=None), u("ops", "retire", phase="planned")],
                  failure={"task": "Plan every user before any write", "msg": "two Active keys", "refused": True})
    assert [e["result"] for e in r["users"]] == ["refused", "refused"] and not r["ok"]
    assert r["message"].startswith('rotation failed: refused before any change at "Plan every user before any write"')
