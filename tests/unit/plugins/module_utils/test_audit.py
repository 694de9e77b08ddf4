"""The audit's decisions (_audit): which hosts hold each user's key, which keys are due, the lines."""
from rotation_fixtures import OLD, NEW, consumer

from ansible_collections.rekey.aws.plugins.module_utils import _audit

HOSTVARS = {
    "web1": {"rotate_consumers": [consumer("app"), consumer("other", user="billing"), consumer("again")]},
    "web2": {"rotate_consumers": [consumer("app")]},
    "db1": {"rotate_consumers": "not a list"},
    "db2": {},
}


def key(key_id, status="Active", age=100, user="app", **fields):
    k = {"user_name": user, "access_key_id": key_id, "status": status, "age_days": age, "last_used_date": None}
    k.update(fields)
    return k


def test_holders_are_each_host_once_in_inventory_order():
    assert _audit.holders(["web2", "web1", "db1", "db2"], HOSTVARS) == {"app": ["web2", "web1"], "billing": ["web1"]}


def test_a_key_is_due_when_active_and_old_enough():
    found = _audit.entries([key(OLD), key(NEW, age=10), key("AKIAINACTIVE00000001", status="Inactive"),
                            key("AKIAOTHER00000000009", user="nobody", age="90")], "90", {"app": ["web1"]})
    assert [(k["due"], k["held_by"]) for k in found] == [(True, ["web1"]), (False, ["web1"]), (False, ["web1"]),
                                                         (True, [])]


def test_lines_name_use_and_due():
    found = _audit.entries([key(OLD, last_used_date="2024-05-30T10:00:00+00:00", last_used_service="s3"),
                            key(NEW, age=1)], 90, {})
    assert _audit.lines(found, 90) == [
        "app %s Active, 100 days old, last used 2024-05-30T10:00:00+00:00 (s3, ?), DUE (rotate_max_age_days 90)" % OLD,
        "app %s Active, 1 days old, never used" % NEW]
    assert _audit.lines([], 90) == ["no access keys"]
