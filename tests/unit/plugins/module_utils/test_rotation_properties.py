"""Property-based tests of the plan and the resume decision: for generated users (0-2 keys, any
statuses, ages and last uses, any recorded phase and key ids, the store holding the recorded key
or not) the promise holds."""
import datetime

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings as hsettings, strategies as st  # noqa: E402

from rotation_fixtures import NOW, OLD, NEW, OTHER, RUN, consumer, settings  # noqa: E402

from ansible_collections.rekey.aws.plugins.module_utils import _plan, _resume  # noqa: E402
from ansible_collections.rekey.aws.plugins.module_utils._keys import iso, utc  # noqa: E402
from ansible_collections.rekey.aws.plugins.module_utils._rotation import PHASES  # noqa: E402

IDS = (OLD, NEW, OTHER)
HOSTVARS = {"web1": {"rotate_consumers": [consumer()]}}


@st.composite
def a_key(draw, key_id):
    age = draw(st.integers(0, 400))
    used = draw(st.one_of(st.none(), st.integers(0, age)))
    created = NOW - datetime.timedelta(days=age, seconds=draw(st.integers(0, 86399)))
    return {"access_key_id": key_id, "user_name": "app", "status": draw(st.sampled_from(["Active", "Inactive"])),
            "create_date": iso(created), "age_days": age,
            "last_used_date": None if used is None else iso(NOW - datetime.timedelta(days=used)),
            "last_used_service": None, "last_used_region": None}


@st.composite
def a_user(draw):
    ids = draw(st.lists(st.sampled_from(IDS), max_size=2, unique=True))
    keys = sorted((draw(a_key(i)) for i in ids), key=lambda k: utc(k["create_date"]))
    recorded = draw(st.one_of(st.none(), st.fixed_dictionaries({
        "run_id": st.just("20240530T110000Z-000042"), "phase": st.sampled_from(PHASES),
        "old_key_id": st.sampled_from(IDS + (None,)), "new_key_id": st.sampled_from(IDS + (None,)),
        "updated": st.one_of(st.none(), st.integers(0, 400 * 86400).map(
            lambda s: iso(NOW - datetime.timedelta(seconds=s))))})))
    s = settings(rotate_max_age_days=draw(st.integers(0, 200)), rotate_prune_unused_days=draw(st.integers(0, 100)),
                 rotate_force=draw(st.booleans()),
                 rotate_retire_key_ids=draw(st.lists(st.sampled_from(IDS), max_size=2, unique=True)),
                 rotate_retire=draw(st.sampled_from(["delete", "deactivate"])))
    return keys, recorded, draw(st.booleans()), s


def decide(keys, recorded, holds, s):
    return _plan.decide(["app"], keys, {"app": recorded} if recorded else {}, {"app": holds}, s, NOW, ["web1"],
                        ["web1"], HOSTVARS, RUN)


def hosts_may_hold(keys, recorded):
    """The recorded new key of a rotation past its first host, while Active (a rollback that put
    every host back deactivates it first)."""
    if not recorded or recorded["phase"] not in _resume.HOSTS_MAY_HOLD:
        return None
    return next((k["access_key_id"] for k in keys
                 if k["access_key_id"] == recorded["new_key_id"] and k["status"] == "Active"), None)


@hsettings(max_examples=200, deadline=None)
@given(a_user())
def test_the_promise_holds_for_any_user(user):
    keys, recorded, holds, s = user
    plan = decide(keys, recorded, holds, s)
    writes = _plan.planned_writes(plan, s["rotate_retire"])
    by_id = dict((k["access_key_id"], k) for k in keys)
    if plan["errors"]:
        # A refusal plans no write at all.
        assert writes == []
        return
    gone = [w for w in writes if w[0] in ("discard", "prune")]
    created = [w for w in writes if w[0] == "create"]
    # Never a third key: what is freed is freed before the one create.
    assert len(created) <= 1
    assert len(keys) - len(gone) + len(created) <= 2
    assert len(set(w[2] for w in gone)) == len(gone)
    cutoff = NOW - datetime.timedelta(days=s["rotate_prune_unused_days"])
    for what, _u, key_id in gone:
        key = by_id[key_id]
        if what == "prune":
            # Only an Inactive key unused for longer than the window frees the second slot.
            assert key["status"] == "Inactive"
            assert utc(key["last_used_date"] or key["create_date"]) <= cutoff
        else:
            # Only a key a killed run created, never its old key, never one hosts may hold.
            assert key_id != (recorded or {}).get("old_key_id")
            assert key_id != hosts_may_hold(keys, recorded)
    app = plan["users"]["app"]
    # The old key retired is a key of the user, never the new key the rotation moves hosts to.
    for what, _u, key_id in writes:
        if what in ("deactivate", "delete"):
            assert key_id in by_id and key_id == app["old_key_id"] and key_id != app["new_key_id"]
    if created:
        assert app["action"] == "rotate" and app["phase"] == "planned"


@hsettings(max_examples=200, deadline=None)
@given(a_user())
def test_a_resume_never_discards_a_key_hosts_may_hold(user):
    keys, recorded, holds, s = user
    held = hosts_may_hold(keys, recorded)
    try:
        r, _errors = _resume.resume_user("app", recorded, keys, holds)
    except ValueError:
        pytest.fail("every recorded phase is one rekey.aws records")
    # Only once the hosts are put back on the old key: the store lost the key they may hold.
    assert r["discard_key_id"] != held or held is None or (r["mode"] == "revert" and not holds)
    assert r["discard_key_id"] is None or r["discard_key_id"] != r["old_key_id"]
    if held is not None and r["mode"] in ("continue", "finish"):
        plan = decide(keys, recorded, holds, s)
        # Resumed with hosts that may hold its new key: a failed rollout keeps that key.
        if plan["users"]["app"]["action"] == "rotate":
            assert plan["users"]["app"]["new_key_id"] == held
            assert _plan.keep_new_users(plan["users"]) == ["app"]
