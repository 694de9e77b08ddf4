"""The rotation after the plan as a state machine (_progress): what each event does to the plan and
what it says the next steps do."""
import pytest

from rotation_fixtures import NOW, OLD, NEW, OTHER, KILLED_RUN

from ansible_collections.rekey.aws.plugins.module_utils import _progress

CUTOVER = "2024-05-31T12:00:00+00:00"


def user(name="app", action="rotate", phase="distributing", **fields):
    p = {"user_name": name, "action": action, "old_key_id": OLD, "new_key_id": NEW if action == "rotate" else None,
         "target_key_id": NEW, "phase": phase, "reason": "", "resume": {"mode": "none"}}
    p.update(fields)
    return p


def plan(*users, **fields):
    p = {"users": dict((u["user_name"], u) for u in users), "errors": [],
         "entries": [{"host": "web1", "name": "app", "iam_user": "app"}, {"host": "web2", "name": "app", "iam_user": "app"}],
         "targets": ["web1", "web2"]}
    p.update(fields)
    return p


UPDATED = {"status": "updated", "phase": "checked", "failure": {}, "existed": {"app": True}}


def test_verified_records_the_keys_that_work_and_refuses_a_store_holding_another():
    p, todo = _progress.verified(plan(user(phase="key_stored")), ["app"],
                                 [{"access_key_id": NEW, "seconds": 3.5, "attempts": 4}])
    assert (p["users"]["app"]["phase"], p["users"]["app"]["verify_seconds"]) == ("key_verified", 3.5)
    assert todo["records"] == [{"user_name": "app", "phase": "key_verified", "old_key_id": OLD, "new_key_id": NEW}]
    with pytest.raises(_progress.ProgressError, match="The secret store holds %s but this run created %s" % (OTHER, NEW)):
        _progress.verified(plan(user(phase="key_stored")), ["app"], [{"access_key_id": OTHER, "seconds": 1, "attempts": 1}])


def test_a_rotation_resumed_while_distributing_is_not_recorded_back_at_key_verified():
    resumed = user(phase="key_stored", resume={"mode": "continue", "phase": "distributing", "run_id": KILLED_RUN})
    _p, todo = _progress.verified(plan(resumed), ["app"], [{"access_key_id": NEW, "seconds": 1, "attempts": 1}])
    assert todo["records"] == []
    p, _todo = _progress.distributing(_p, ["app"])
    assert p["users"]["app"]["phase"] == "distributing"


@pytest.mark.parametrize("outcomes,failure,ok", [
    ({"web1": UPDATED, "web2": UPDATED}, {}, True),
    ({"web1": UPDATED}, {}, False),  # web2 never heard from
    ({"web1": UPDATED, "web2": dict(UPDATED, status="rolled_back")}, {}, False),
    ({"web1": UPDATED, "web2": UPDATED}, {"task": "t", "msg": "m"}, False),
])
def test_gathered_says_whether_the_rollout_is_complete(outcomes, failure, ok):
    p, todo = _progress.gathered(plan(user(), user("ops", "retire")), outcomes, failure, NOW)
    assert p["rollout_ok"] is ok and p["outcomes"]["web2"]["status"] == outcomes.get("web2", {}).get("status", "not_reached")
    assert p["retiring"] == (["app", "ops"] if ok else [])
    assert todo["records"] == ([{"user_name": "app", "phase": "distributed", "old_key_id": OLD, "new_key_id": NEW}]
                               if ok else [])
    assert p["cutover"] == "2024-05-31T12:00:00+00:00"


def finishing(*users):
    p, _todo = _progress.gathered(plan(*users), {"web1": UPDATED, "web2": UPDATED}, {}, NOW)
    return p


def test_an_old_key_used_after_the_cutover_is_not_deactivated():
    used = {"user_name": "app", "access_key_id": OLD, "last_used_date": "2024-05-31T12:00:05+00:00",
            "last_used_service": "s3", "last_used_region": "eu-west-1"}
    p, todo = _progress.idle_checked(finishing(user(), user("ops", "retire", old_key_id=OTHER)), [used])
    assert list(p["in_use"]) == ["app"] and "was used at 2024-05-31T12:00:05+00:00 by s3" in p["in_use"]["app"]
    assert [r["user_name"] for r in todo["deactivate"]] == ["ops"]
    assert todo["records"] == []  # a named key's retirement writes no state
    p, _todo = _progress.deactivated(p, NOW, 15)
    assert (p["users"]["app"]["result"], p["users"]["app"]["phase"]) == ("old_key_in_use", "distributed")
    assert p["users"]["ops"]["phase"] == "old_deactivated"


def deactivated(*users):
    p, _todo = _progress.idle_checked(finishing(*users), [])
    p, _todo = _progress.deactivated(p, NOW, 15)
    return p


def test_deactivated_says_which_consumers_each_host_re_checks():
    entries = [{"host": "web1", "name": "app", "iam_user": "app"}, {"host": "web2", "name": "app", "iam_user": "app"},
               {"host": "web2", "name": "kept", "iam_user": "kept"}, {"host": "web3", "name": "ops", "iam_user": "ops"}]
    kept_old = "AKIAKEPT000000000000"
    used = {"user_name": "kept", "access_key_id": kept_old, "last_used_date": "2024-05-31T12:00:05+00:00",
            "last_used_service": "s3", "last_used_region": "eu-west-1"}
    p, _todo = _progress.gathered(plan(user(), user("kept", old_key_id=kept_old), user("ops", "retire", old_key_id=OTHER), entries=entries,
                                       targets=["web1", "web2"]), {"web1": UPDATED, "web2": UPDATED}, {}, NOW)
    p, _todo = _progress.idle_checked(p, [used])
    p, todo = _progress.deactivated(p, NOW, 15)
    assert todo["rechecks"] == {"web1": [entries[0]], "web2": [entries[1]], "web3": [entries[3]]}
    assert todo["rechecks"] == _progress.rechecks(p)


@pytest.mark.parametrize("settle_s", [0, 2.5, 15])
def test_the_re_checks_wait_for_the_deactivation_to_propagate(settle_s):
    p = finishing(user())
    assert p["recheck_after"] == 0
    p, _todo = _progress.idle_checked(p, [])
    p, _todo = _progress.deactivated(p, NOW, settle_s)
    assert p["recheck_after"] == NOW.timestamp() + settle_s


APP = {"host": "web1", "name": "app", "iam_user": "app"}
FAILED_CHECK = {"host": "web1", "consumer": "app", "iam_user": "app", "check": "GET u", "got": "HTTP 403",
                "output": "web1 app: HTTP 403"}


@pytest.mark.parametrize("result, got", [
    ({"health_failures": []}, None),
    ({"health_failures": [FAILED_CHECK], "failed": True, "msg": "Nothing was changed. ..."}, "HTTP 403"),
    # The play never reached the host, or its task was skipped: it proved nothing.
    (None, "did not run its checks"),
    ({"skipped": True}, "did not run its checks"),
    ({"unreachable": True, "msg": " ssh: connect refused \n"}, "host unreachable: ssh: connect refused"),
    ({"failed": True, "msg": "become password required"}, "become password required"),
])
def test_a_host_that_ran_no_check_fails_every_check_it_had(result, got):
    failures = _progress.host_check_failures({"web1": [APP]}, {"web1": result})
    assert [f["got"] for f in failures] == ([got] if got else [])
    assert all(f["iam_user"] == "app" and f["output"].startswith("web1 app") for f in failures)


def test_prechecked_refuses_naming_every_failed_check_of_every_host_of_the_rollout():
    p = plan(user())
    assert _progress.prechecked(p, {"web1": {"health_failures": []}, "web2": {"health_failures": []}}) == (p, {})
    with pytest.raises(_progress.ProgressError) as refused:
        _progress.prechecked(p, {"web1": {"health_failures": [FAILED_CHECK]}})
    assert str(refused.value).startswith("Nothing was changed.")
    assert "web1 app: HTTP 403" in str(refused.value) and "web2 app: did not run its checks" in str(refused.value)
    # Hosts that receive no key are not checked.
    assert _progress.prechecked(dict(p, targets=["web1"]), {"web1": {"health_failures": []}}) == (dict(p, targets=["web1"]), {})


@pytest.mark.parametrize("retire", ["delete", "deactivate"])
def test_rechecked_reactivates_users_with_a_failed_check_and_retires_the_others(retire):
    failing = {"host": "web2", "consumer": "billing", "iam_user": "billing", "check": "GET u", "got": "HTTP 403",
               "output": "web2 billing: refused"}
    p = deactivated(user(), user("billing"))
    p, todo = _progress.rechecked(p, [failing], retire)
    assert p["users"]["app"]["old_key_checked"] is True and "old_key_checked" not in p["users"]["billing"]
    assert [r["user_name"] for r in todo["reactivate"]] == ["billing"]
    assert [(r["user_name"], r["phase"]) for r in todo["back"]] == [("billing", "distributed")]
    assert [r["user_name"] for r in todo["delete"]] == (["app"] if retire == "delete" else [])
    assert [(r["user_name"], r["phase"]) for r in todo["retired"]] == ([("app", "old_retired")] if retire == "delete" else [])
    assert todo["finished"] == ["app"]
    p, _todo = _progress.retired(p)
    assert (p["users"]["app"]["result"], p["users"]["app"]["phase"]) == ("rotated", "old_retired")
    assert p["users"]["billing"]["result"] == "failed_after_deactivation"
    assert "web2 billing: refused" in p["users"]["billing"]["message"]


def test_an_unexpected_failure_while_retiring_reactivates_only_unchecked_keys():
    p = deactivated(user(), user("billing"))
    p, _todo = _progress.rechecked(p, [], "delete")  # both checked
    p["users"]["app"].pop("old_key_checked")  # app's check did not happen
    _p, todo = _progress.retire_failing(p)
    assert [r["user_name"] for r in todo["reactivate"]] == ["app"]
    registered = {"results": [{"item": todo["reactivate"][0], "changed": True, "failed": False}]}
    p, todo = _progress.retire_failed(p, "Delete the old keys", {"msg": "AccessDenied iam:DeleteAccessKey"},
                                      _progress.from_reactivations(registered))
    assert p["users"]["app"]["result"] == "failed" and "was reactivated" in p["users"]["app"]["message"]
    assert "stays Inactive" in p["users"]["billing"]["message"]
    assert [(r["user_name"], r["phase"]) for r in todo["records"]] == [("app", "distributed")]


def test_retire_failing_before_the_rollout_was_gathered_reactivates_nothing():
    assert _progress.retire_failing(plan(user()))[1] == {"reactivate": []}


def test_put_back_then_rolled_back():
    p, _todo = _progress.gathered(plan(user()), {"web1": UPDATED, "web2": dict(UPDATED, status="failed", phase="writing")},
                                  {}, NOW)
    registered = {"results": [{"item": "web1", "problems": []}]}
    p, todo = _progress.put_back(p, _progress.from_put_back(registered))
    assert p["outcomes"]["web1"]["status"] == "rolled_back"
    assert [r["user_name"] for r in todo["discard"]] == ["app"]
    p, todo = _progress.rolled_back(p, _progress.from_deleted({"results": [{"item": todo["discard"][0]}]}))
    assert (p["users"]["app"]["result"], p["users"]["app"]["phase"]) == ("rolled_back", "rolled_back")
    assert [(r["user_name"], r["phase"]) for r in todo["records"]] == [("app", "rolled_back")]


def test_a_host_that_could_not_be_put_back_keeps_the_new_key():
    p, _todo = _progress.gathered(plan(user()), {"web1": UPDATED, "web2": dict(UPDATED, status="failed")}, {}, NOW)
    registered = {"results": [{"item": "web1", "failed": True, "msg": "unreachable"}]}
    p, todo = _progress.put_back(p, _progress.from_put_back(registered))
    assert p["outcomes"]["web1"] == dict(UPDATED, status="rollback_failed", rollback=["web1: unreachable"])
    assert todo["discard"] == []
    p, todo = _progress.rolled_back(p, [])
    assert p["users"]["app"]["result"] == "rollback_incomplete" and "web1 may hold it" in p["users"]["app"]["message"]
    assert todo["records"] == []


def test_a_resumed_rotation_keeps_its_new_key_after_a_failed_rollout():
    resumed = user(resume={"mode": "continue", "phase": "distributing", "run_id": KILLED_RUN})
    p, _todo = _progress.gathered(plan(resumed), {"web1": dict(UPDATED, status="failed", phase="started")}, {}, NOW)
    p, todo = _progress.put_back(p, {})
    assert todo["discard"] == []
    p, _todo = _progress.rolled_back(p, [])
    assert p["users"]["app"]["result"] == "rollback_incomplete" and KILLED_RUN in p["users"]["app"]["message"]


def creating(*names):
    return plan(*[user(n, phase="planned", new_key_id=None, target_key_id=None) for n in names])


def made(name, key_id):
    return {"item": {"user_name": name}, "changed": True, "created": True, "access_key": {"access_key_id": key_id}}


@pytest.mark.parametrize("created, stored, recording, records, discard, problem", [
    ([made("app", NEW)], [{"item": {"user_name": "app"}, "changed": True}], {"changed": True}, ["app"], [], None),
    # IAM refused one user: the other goes on; the run stops after deleting what must go.
    ([made("app", NEW), {"item": {"user_name": "b"}, "failed": True, "msg": "LimitExceeded"}],
     [{"item": {"user_name": "app"}}, {"item": {"user_name": "b"}, "skipped": True}], {}, ["app"], [],
     "IAM user b: LimitExceeded"),
    # Not stored: the key is deleted, never recorded.
    ([made("app", NEW)], [{"item": {"user_name": "app"}, "failed": True, "msg": "vault: permission denied"}],
     {"skipped": True}, [], ["app"], "IAM user app: vault: permission denied"),
    # Stored but not recorded: deleted too (a resume could not tell it from a killed run's).
    ([made("app", NEW)], [{"item": {"user_name": "app"}}], {"failed": True, "msg": "Throttling"}, ["app"], ["app"],
     "IAM user app: recording the new key %s failed: Throttling" % NEW),
    # Another key appeared meanwhile: not created, nothing to delete.
    ([{"item": {"user_name": "app"}, "created": False, "access_key": {"access_key_id": OTHER}}], [], {"skipped": True},
     [], [], "IAM user app: an Active key younger than the old one appeared (%s): another run may be rotating app" % OTHER),
], ids=["stored", "one_create_failed", "store_failed", "record_failed", "not_created"])
def test_created_and_recorded_decide_what_is_recorded_and_what_is_deleted(
        created, stored, recording, records, discard, problem):
    p, todo = _progress.created(creating("app", "b"), _progress.from_created(created), _progress.from_stored(stored))
    wanted = [(u, "distributing", NEW) for u in records]
    assert [(r["user_name"], r["phase"], r["new_key_id"]) for r in todo["records"]] == wanted
    p, lost = _progress.recorded(p, todo, recording)
    assert [r["user_name"] for r in lost["discard"]] == discard
    assert lost["problems"] == ([problem] if problem else [])
    for u in records:
        assert (p["users"][u]["new_key_id"], p["users"][u]["phase"]) == (NEW, "key_created")
    p, _todo = _progress.discarded(p, discard)
    for u in discard:
        assert (p["users"][u]["new_key_id"], p["users"][u]["deleted_key_id"], p["users"][u]["phase"]) == (
            None, NEW, "rolled_back")
    assert "secret_access_key" not in str(p)
