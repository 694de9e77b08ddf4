"""The per-user plan (_plan) and the rollout entries and targets (_rollout), table-driven."""

import pytest

from rotation_fixtures import NOW, OLD, NEW, OTHER, RUN, consumer, key, settings, state

from ansible_collections.rekey.aws.plugins.module_utils import _plan, _rollout

ACTIVE_OLD = key(OLD, age=100)

# (id, keys, settings changes, action, old_key_id, target_key_id, prune_key_ids, reason or None)
PLANS = [
    ("due", [ACTIVE_OLD], {}, "rotate", OLD, None, [], "key %s is 100 days old (rotate_max_age_days 90)" % OLD),
    ("due_at_exactly_max_age", [key(OLD, age=90)], {}, "rotate", OLD, None, [], None),
    ("not_due", [key(OLD, age=10)], {}, "none", OLD, OLD, [],
     "key %s is 10 days old, under rotate_max_age_days 90" % OLD),
    ("forced", [key(OLD, age=1)], {"rotate_force": True}, "rotate", OLD, None, [], "forced (rotate_force)"),
    ("forced_as_extra_var_string", [key(OLD, age=1)], {"rotate_force": "true"}, "rotate", OLD, None, [], None),
    ("not_forced_string_no", [key(OLD, age=1)], {"rotate_force": "no"}, "none", OLD, OLD, [], None),
    ("max_age_as_string", [key(OLD, age=40)], {"rotate_max_age_days": "30"}, "rotate", OLD, None, [], None),
    ("max_age_zero_always_due", [key(OLD, age=0)], {"rotate_max_age_days": 0}, "rotate", OLD, None, [], None),
    ("prune_inactive_unused_40_days", [ACTIVE_OLD, key(OTHER, status="Inactive", age=200, used=40)], {},
     "rotate", OLD, None, [OTHER], None),
    ("prune_inactive_never_used_created_40_days_ago", [ACTIVE_OLD, key(OTHER, status="Inactive", age=40)], {},
     "rotate", OLD, None, [OTHER], None),
    ("prune_inactive_used_exactly_at_cutoff", [ACTIVE_OLD, key(OTHER, status="Inactive", age=200, used=30)], {},
     "rotate", OLD, None, [OTHER], None),
    ("prune_window_zero_prunes_yesterday", [ACTIVE_OLD, key(OTHER, status="Inactive", age=200, used=1)],
     {"rotate_prune_unused_days": 0}, "rotate", OLD, None, [OTHER], None),
    ("inactive_key_older_but_active_is_old", [key(OTHER, status="Inactive", age=300, used=100), ACTIVE_OLD], {},
     "rotate", OLD, None, [OTHER], None),
    ("not_due_leaves_recent_inactive_alone", [key(OLD, age=10), key(OTHER, status="Inactive", age=5)], {},
     "none", OLD, OLD, [], None),
    ("retire_named_key", [key(OLD, age=100), key(OTHER, age=5)], {"rotate_retire_key_ids": [OLD]},
     "retire", OLD, OTHER, [], "two Active keys; rotate_retire_key_ids names %s to retire, %s stays" % (OLD, OTHER)),
    ("retire_named_newer_key", [key(OLD, age=100), key(OTHER, age=5)], {"rotate_retire_key_ids": [OTHER]},
     "retire", OTHER, OLD, [], None),
]


@pytest.mark.parametrize("case", PLANS, ids=[c[0] for c in PLANS])
def test_plan_of_one_user(case):
    _id, keys, changes, action, old, target, prune, reason = case
    p, errors = _plan.plan_user("app", keys, settings(**changes), NOW)
    assert errors == []
    assert (p["action"], p["old_key_id"], p["target_key_id"], p["prune_key_ids"], p["phase"]) == (
        action, old, target, prune, "planned")
    assert p["keys_before"] == [k["access_key_id"] for k in keys]
    if reason is not None:
        assert p["reason"] == reason


RECENT_INACTIVE = key(OTHER, status="Inactive", age=200, used=10, service="s3", region="eu-west-1")

# (id, keys, settings changes, the exact refusal)
REFUSALS = [
    ("two_active_none_named", [key(OLD, age=100), key(OTHER, age=5, used=0, service="sts", region="us-east-1")], {},
     "IAM user app has two Active access keys: %s (Active, created %s, never used); %s (Active, created %s, last used "
     "%s by sts in us-east-1). Nothing was changed: a third key cannot be created and it is not known which one is in "
     "use. Put the key to retire in rotate_retire_key_ids (it will be deactivated, the fleet re-checked, then deleted) "
     "and run again." % (OLD, key(OLD)["create_date"], OTHER, key(OTHER, age=5)["create_date"], key(OLD, used=0)[
         "last_used_date"])),
    ("two_active_both_named", [key(OLD, age=100), key(OTHER, age=5)], {"rotate_retire_key_ids": [OLD, OTHER]},
     "IAM user app has two Active access keys: %s (Active, created %s, never used); %s (Active, created %s, never "
     "used). Nothing was changed: a third key cannot be created and it is not known which one is in use. "
     "rotate_retire_key_ids names both: name only the one to retire."
     % (OLD, key(OLD)["create_date"], OTHER, key(OTHER, age=5)["create_date"])),
    ("no_keys", [], {}, "IAM user app has no Active access key, so there is nothing to rotate from (keys: none). "
                        "Nothing was changed."),
    ("only_inactive", [RECENT_INACTIVE], {},
     "IAM user app has no Active access key, so there is nothing to rotate from (keys: %s (Inactive, created %s, last "
     "used %s by s3 in eu-west-1)). Nothing was changed."
     % (OTHER, RECENT_INACTIVE["create_date"], RECENT_INACTIVE["last_used_date"])),
    ("inactive_used_within_prune_window", [ACTIVE_OLD, RECENT_INACTIVE], {},
     "IAM user app needs its second key slot for the new key, but it holds the Inactive key %s (Inactive, created %s, "
     "last used %s by s3 in eu-west-1), used or created less than 30 days ago (rotate_prune_unused_days). Nothing was "
     "changed: delete that key yourself if nothing needs it, or wait."
     % (OTHER, RECENT_INACTIVE["create_date"], RECENT_INACTIVE["last_used_date"])),
    ("inactive_created_within_prune_window", [ACTIVE_OLD, key(OTHER, status="Inactive", age=3)], {},
     "IAM user app needs its second key slot for the new key, but it holds the Inactive key %s (Inactive, created %s, "
     "never used), used or created less than 30 days ago (rotate_prune_unused_days). Nothing was changed: delete that "
     "key yourself if nothing needs it, or wait." % (OTHER, key(OTHER, age=3)["create_date"])),
    ("inactive_used_one_second_after_cutoff",
     [ACTIVE_OLD, dict(key(OTHER, status="Inactive", age=200), last_used_date="2024-05-01T12:00:01+00:00")], {}, None),
]


@pytest.mark.parametrize("case", REFUSALS, ids=[c[0] for c in REFUSALS])
def test_refusal_names_the_keys_and_what_to_do(case):
    _id, keys, changes, message = case
    _p, errors = _plan.plan_user("app", keys, settings(**changes), NOW)
    assert len(errors) == 1
    if message is not None:
        assert errors[0] == message
    plan = {"errors": errors, "users": {"app": _p}}
    assert _plan.planned_writes(plan) == []


def test_retire_id_of_no_user_is_refused():
    plan = _plan.plan_users(["app", "billing"], [ACTIVE_OLD, key(OTHER, user="billing")],
                            settings(rotate_retire_key_ids=["AKIAUNKNOWN000000009"]), NOW)
    assert plan["errors"] == ["rotate_retire_key_ids names AKIAUNKNOWN000000009, which is not a key of any user being "
                              "rotated (app, billing)"]


def test_more_than_two_keys_is_bad_input():
    with pytest.raises(ValueError, match="IAM user app has 3 keys .*expected at most 2"):
        _plan.plan_user("app", [key(OLD), key(NEW), key(OTHER)], settings(), NOW)


@pytest.mark.parametrize("keys,changes,writes", [
    ([ACTIVE_OLD], {}, [("create", "app", None), ("deactivate", "app", OLD), ("delete", "app", OLD)]),
    ([ACTIVE_OLD], {"rotate_retire": "deactivate"}, [("create", "app", None), ("deactivate", "app", OLD)]),
    ([ACTIVE_OLD, key(OTHER, status="Inactive", age=99)], {},
     [("prune", "app", OTHER), ("create", "app", None), ("deactivate", "app", OLD), ("delete", "app", OLD)]),
    ([key(OLD, age=100), key(OTHER, age=5)], {"rotate_retire_key_ids": [OLD]},
     [("deactivate", "app", OLD), ("delete", "app", OLD)]),
    ([key(OLD, age=5)], {}, []),
], ids=["rotate", "rotate_deactivate_only", "prune_then_create", "retire_named", "not_due_no_write"])
def test_planned_writes(keys, changes, writes):
    s = settings(**changes)
    plan = _plan.plan_users(["app"], keys, s, NOW)
    assert _plan.planned_writes(plan, s["rotate_retire"]) == writes


HOSTVARS = {
    "web1": {"rotate_consumers": [consumer("app"), consumer("other", user="billing")], "inventory_dir": "/inv"},
    "web2": {"rotate_consumers": [consumer("app", format="template", template="creds.j2")], "inventory_dir": "/inv"},
    "db1": {"rotate_consumers": [consumer("app")], "inventory_dir": "/inv"},
}


def test_entries_carry_defaults_backup_and_template_source():
    entries = _rollout.entries(["app"], ["web1", "web2"], HOSTVARS, RUN, "/var/lib/rekey-aws/backups")
    assert [(e["host"], e["name"], e["backup"], e["template_src"]) for e in entries] == [
        ("web1", "app", "/var/lib/rekey-aws/backups/%s-web1-app.bak" % RUN, ""),
        ("web2", "app", "/var/lib/rekey-aws/backups/%s-web2-app.bak" % RUN, "/inv/creds.j2")]
    assert entries[0]["mode"] == "0600" and entries[0]["format"] == "credentials"


def test_host_outside_rotate_hosts_holding_a_busy_key_is_refused():
    assert _rollout.outside_problems(["app"], ["web1", "web2"], ["web1", "web2", "db1"], "web*", HOSTVARS) == [
        "host db1 holds the key of IAM user app (consumer app) but is not in rotate_hosts (web*): it would lose a "
        "working key when the old one is retired. Widen rotate_hosts or leave that user out (rotate_users)."]
    assert _rollout.outside_problems(["billing"], ["web1"], ["web1", "web2", "db1"], "web1", HOSTVARS) == []
    assert _rollout.outside_problems(["app"], ["web1"], ["web1", "db1"], "all", HOSTVARS) == []


def test_limit_leaving_out_a_target_is_refused():
    assert _rollout.left_out_problem(["web1", "web2"], None) is None
    assert _rollout.left_out_problem(["web1", "web2"], ["web1", "web2", "db1"]) is None
    assert _rollout.left_out_problem(["web1", "web2"], ["web1"]) == (
        "Nothing was changed. --limit leaves out web2, which hold keys of users being rotated; every host holding a "
        "key must be updated in the same run. Choose hosts with rotate_hosts and users with rotate_users instead.")


def decide(keys, recorded=None, store_holds=None, hosts=("web1", "web2"), **changes):
    return _plan.decide(["app", "billing"], keys, recorded or {}, store_holds or {}, settings(**changes), NOW,
                        list(hosts), ["web1", "web2", "db1"], HOSTVARS, RUN)


def test_decide_targets_only_hosts_of_rotated_users():
    plan = decide([ACTIVE_OLD, key(OTHER, user="billing", age=5)])
    assert plan["errors"] == []
    assert plan["targets"] == ["web1", "web2"]
    assert [(e["host"], e["iam_user"]) for e in plan["entries"]] == [("web1", "app"), ("web2", "app")]
    assert plan["users"]["app"]["hosts"] == ["web1", "web2"] and plan["users"]["billing"]["hosts"] == []


def test_decide_resumed_finish_keeps_entries_without_targets():
    keys = [key(OLD, age=100), key(NEW, age=0)]
    plan = decide(keys + [key(OTHER, user="billing", age=5)], {"app": state("distributed")})
    app = plan["users"]["app"]
    assert (app["action"], app["phase"], app["new_key_id"], app["target_key_id"]) == ("rotate", "distributed", NEW, NEW)
    assert plan["targets"] == [] and [e["host"] for e in plan["entries"]] == ["web1", "web2"]
    assert _plan.first_phase(app) == "distributed"


def test_decide_resumed_done_keeps_consumers_for_their_backups():
    plan = decide([key(NEW, age=0), key(OTHER, user="billing", age=5)], {"app": state("old_retired")})
    app = plan["users"]["app"]
    assert (app["action"], app["target_key_id"], app["hosts"]) == ("none", NEW, [])
    assert plan["targets"] == [] and len(plan["entries"]) == 2
    assert _plan.locked_users(plan["users"]) == ["app"]


@pytest.mark.parametrize("web1_app, web1_other, held", [
    ({}, {}, False),
    ({"format": "ssm_parameter", "parameter_name": "/app/key"}, {}, True),
    ({"format": "secretsmanager_secret", "secret_name": "app/key"}, {}, True),
    # billing is not rotated: its consumer held in AWS is not written.
    ({}, {"format": "ssm_parameter", "parameter_name": "/billing/key"}, False),
])
def test_the_plan_says_whether_a_consumer_of_the_rotation_is_held_in_aws(web1_app, web1_other, held):
    hostvars = dict(HOSTVARS, web1={"rotate_consumers": [consumer("app", **web1_app),
                                                         consumer("other", user="billing", **web1_other)],
                                    "inventory_dir": "/inv"})
    plan = _plan.decide(["app", "billing"], [ACTIVE_OLD, key(OTHER, user="billing", age=5)], {}, {}, settings(), NOW,
                        ["web1", "web2"], ["web1", "web2", "db1"], hostvars, RUN)
    assert plan["errors"] == [] and plan["held_in_aws"] is held


def test_host_work_is_the_hosts_consumers_being_distributed():
    plan = decide([ACTIVE_OLD, key(OTHER, user="billing", age=5)])
    users = dict(plan["users"])
    assert _rollout.host_work(users, plan["entries"], "web1") == []
    users["app"] = dict(users["app"], phase="distributing", new_key_id=NEW, target_key_id=NEW)
    work = _rollout.host_work(users, plan["entries"], "web1")
    assert [(e["name"], e["old_key_id"], e["new_key_id"], e["target_key_id"]) for e in work] == [("app", OLD, NEW, NEW)]


@pytest.mark.parametrize("resume_mode,phase,expected", [
    # A stored key may reach the hosts from the lock on: no write comes between (issue 10).
    ("none", "planned", "planned"), ("continue", "key_created", "distributing"),
    ("continue", "key_stored", "distributing"), ("continue", "key_verified", "distributing"),
    ("continue", "distributing", "distributing"),
    ("finish", "distributed", "distributed"), ("finish", "old_deactivated", "old_deactivated"),
])
def test_first_phase_recorded_never_goes_back(resume_mode, phase, expected):
    p = {"phase": "planned" if resume_mode == "none" else "key_stored", "resume": {"mode": resume_mode, "phase": phase}}
    assert _plan.first_phase(p) == expected
