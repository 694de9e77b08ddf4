"""The audit's decisions (_audit): which consumers and hosts hold each key, whether a host is an EC2
instance, each finding, the report and the lines."""
import json

import pytest
from rotation_fixtures import NOW, OLD, NEW, OTHER, consumer, key

from ansible_collections.rekey.aws.plugins.module_utils import _audit

HOSTVARS = {
    "web1": {"rotate_consumers": [consumer("app"), consumer("other", user="billing"),
                                  consumer("env", format="env", path="/etc/app/aws.env")]},
    "web2": {"rotate_consumers": [consumer("app")]},
    "db1": {"rotate_consumers": "not a list"},
    "db2": {},
    "db3": {"rotate_consumers": [{"name": "no-user"}, "not a mapping"]},
}
HOSTS = ["web2", "web1", "db1", "db2", "db3"]
NOT_EC2 = {"ec2": False, "source": "DMI sys_vendor \"QEMU\""}
EC2 = {"ec2": True, "source": "audit_ec2_instance: true"}
UNKNOWN = {"ec2": None, "source": "no DMI vendor, asset tag or UUID readable; set audit_ec2_instance"}


def held(*pairs):
    return [{"host": h, "name": n, "path": "/etc/%s/credentials" % n, "format": "credentials"} for h, n in pairs]


def test_consumers_by_user_in_inventory_order_with_the_roles_defaults():
    by_user = _audit.consumers_by_user(HOSTS, HOSTVARS)
    assert by_user == {
        "app": held(("web2", "app"), ("web1", "app")) + [
            {"host": "web1", "name": "env", "path": "/etc/app/aws.env", "format": "env"}],
        "billing": held(("web1", "other")),
    }


# --- is a host an EC2 instance -----------------------------------------------------------------

DMI = {"sys_vendor": None, "product_name": None, "board_asset_tag": None, "product_uuid": None,
       "hypervisor_uuid": None}


@pytest.mark.parametrize("readings, ec2, evidence", [
    ({"sys_vendor": "Amazon EC2", "board_asset_tag": "i-0123456789abcdef0"}, True, 'DMI sys_vendor "Amazon EC2"'),
    ({"sys_vendor": "", "board_asset_tag": "i-0123456789abcdef0"}, True, "board_asset_tag \"i-0123456789abcdef0\""),
    ({"sys_vendor": "Xen", "hypervisor_uuid": "EC2E1916-9099-7CAF-FD21-012345ABCDEF"}, True, "hypervisor_uuid starts"),
    ({"sys_vendor": "Xen", "product_uuid": "ec2e1916-9099-7caf-fd21-012345abcdef"}, True, "product_uuid starts"),
    ({"sys_vendor": "Xen", "product_uuid": "45E12AEC-DCD1-B213-94ED-012345ABCDEF"}, True, "product_uuid starts"),
    ({"sys_vendor": "QEMU", "product_uuid": None}, False, 'DMI sys_vendor "QEMU"'),
    ({"sys_vendor": "Dell Inc.", "board_asset_tag": "i-not-hex"}, False, 'DMI sys_vendor "Dell Inc."'),
    ({"sys_vendor": "Xen", "hypervisor_uuid": "4a1b0000-0000-0000-0000-000000000000"}, False, "hypervisor_uuid not ec2"),
    ({"sys_vendor": "Xen"}, None, "(Xen) and no readable UUID"),
    ({"product_uuid": "4a1b0000-0000-0000-0000-000000000000"}, False, "product_uuid not ec2, no DMI sys_vendor"),
    ({}, None, "no DMI vendor, asset tag or UUID readable"),
    (None, None, "no DMI vendor, asset tag or UUID readable"),
])
def test_ec2_from_what_the_host_says(readings, ec2, evidence):
    got_ec2, got_evidence = _audit.ec2_from_readings(None if readings is None else dict(DMI, **readings))
    assert got_ec2 is ec2 and evidence in got_evidence


@pytest.mark.parametrize("setting, result, expected", [
    (True, None, {"ec2": True, "source": "audit_ec2_instance: true"}),
    ("no", {"readings": dict(DMI, sys_vendor="Amazon EC2")}, {"ec2": False, "source": 'audit_ec2_instance: "no"'}),
    (None, {"readings": dict(DMI, sys_vendor="Amazon EC2")}, {"ec2": True, "source": 'DMI sys_vendor "Amazon EC2"'}),
    (None, {"readings": dict(DMI, sys_vendor="QEMU")}, {"ec2": False, "source": 'DMI sys_vendor "QEMU"'}),
    (None, {"readings": DMI, "errors": {}}, UNKNOWN),
    (None, {"unreachable": True, "msg": "ssh: connect refused"}, {"ec2": None, "source": "unreachable; set audit_ec2_instance"}),
    (None, {"failed": True, "msg": "no python"}, {"ec2": None, "source": "not read: no python; set audit_ec2_instance"}),
    (None, {"skipped": True}, {"ec2": None, "source": "not read; set audit_ec2_instance"}),
    (None, None, {"ec2": None, "source": "not read; set audit_ec2_instance"}),
])
def test_host_status_the_setting_wins_over_what_the_host_says(setting, result, expected):
    assert _audit.host_status(setting, result) == expected


@pytest.mark.parametrize("value, problem", [
    (None, None), (True, None), (False, None), ("yes", None), ("False", None),
    ("maybe", 'host web1: audit_ec2_instance "maybe" is not a boolean: expected true or false'),
    (2, "host web1: audit_ec2_instance 2 is not a boolean"),
])
def test_the_ec2_setting_must_be_a_boolean(value, problem):
    got = _audit.ec2_setting_problem("web1", value)
    assert (got is None) if problem is None else problem in got


# --- the findings: one row per finding, and keys with none -------------------------------------

def ago_iso(days):
    return key("X", used=days)["last_used_date"]


def findings(keys, by_user=None, statuses=None, max_age=90, unused=45):
    found = _audit.entries(keys, by_user or {}, statuses or {}, max_age, unused, NOW)
    return [[f["finding"] for f in k["findings"]] for k in found], found


APP = {"app": held(("web1", "app"), ("web2", "app"))}


@pytest.mark.parametrize("case, keys, by_user, statuses, expected", [
    ("due: Active and old enough", [key(OLD, age=90, used=1)], APP, {}, [["due"]]),
    ("an Inactive old key is not due", [key(OLD, status="Inactive", age=300, used=1)], APP, {}, [[]]),
    ("a young used key has nothing", [key(OLD, age=10, used=1)], APP, {}, [[]]),
    ("never used", [key(OLD, age=10)], APP, {}, [["never_used"]]),
    ("unused for audit_unused_days", [key(OLD, age=89, used=45)], APP, {}, [["unused"]]),
    ("used a day short of it", [key(OLD, age=89, used=44)], APP, {}, [[]]),
    ("two Active keys: both carry it", [key(OLD, age=10, used=1), key(NEW, age=5, used=1)], APP, {},
     [["two_active_keys"], ["two_active_keys"]]),
    ("one Active, one Inactive: not two", [key(OLD, age=10, used=1), key(NEW, status="Inactive", age=5, used=1)],
     APP, {}, [[], []]),
    ("held by no consumer", [key(OTHER, user="nobody", age=10, used=1)], APP, {}, [["no_consumer"]]),
    ("held on an EC2 host", [key(OLD, age=10, used=1)], APP, {"web1": EC2, "web2": NOT_EC2}, [["instance_role"]]),
    ("EC2 unknown advises nothing", [key(OLD, age=10, used=1)], APP, {"web1": UNKNOWN, "web2": UNKNOWN}, [[]]),
    ("an Inactive key on an EC2 host advises nothing",
     [key(OLD, status="Inactive", age=10, used=1)], APP, {"web1": EC2, "web2": EC2}, [[]]),
])
def test_each_finding(case, keys, by_user, statuses, expected):
    got, _found = findings(keys, by_user, statuses)
    assert got == expected, case


def test_all_findings_at_once_in_order():
    got, _found = findings([key(OLD, user="nobody", age=400, used=100), key(NEW, user="nobody", age=400)])
    assert got == [["due", "unused", "two_active_keys", "no_consumer"],
                   ["due", "never_used", "two_active_keys", "no_consumer"]]


def test_consumers_and_hosts_of_a_key_and_the_instance_role_advice():
    keys = [key(OLD, age=10, used=1), key(NEW, status="Inactive", age=300, used=100)]
    _got, (active, inactive) = findings(keys, APP, {"web1": EC2, "web2": NOT_EC2})
    assert active["consumers"] == APP["app"] and active["held_by"] == ["web1", "web2"]
    # An Inactive key authenticates nothing: no consumer holds it, yet its user has consumers.
    assert inactive["consumers"] == [] and inactive["held_by"] == []
    [advice] = [f["message"] for f in active["findings"]]
    assert advice == ("web1 is an EC2 instance (audit_ec2_instance: true): give it an instance role and drop the "
                      "key there (consumers app on web1)")
    _got, [alone] = findings(keys[:1], APP, {"web1": EC2, "web2": EC2})
    assert alone["findings"][0]["message"].startswith("web1, web2 are EC2 instances (audit_ec2_instance: true)")
    assert "give them an instance role and drop this key: no other host holds it" in alone["findings"][0]["message"]


def test_messages_name_the_numbers_and_spare_a_key_that_consumers_hold():
    _got, found = findings([key(OLD, age=100, used=50), key(OTHER, user="nobody", age=7)], APP,
                           max_age=90, unused=45)
    messages = [f["message"] for k in found for f in k["findings"]]
    assert messages == [
        "due for rotation: 100 days old (rotate_max_age_days 90)",
        "unused for 50 days (audit_unused_days 45): its consumers hold it: check that they still need it, else "
        "remove them and retire it",
        "never used in the 7 days since it was created: if nothing needs it, deactivate and delete it",
        "no consumer in the inventory holds a key of nobody: what uses it is not rotated by rekey.aws; add its "
        "consumers or retire it",
    ]


# --- the report and the lines ------------------------------------------------------------------

def test_the_report_lists_each_finding_and_the_hosts():
    keys = [key(OLD, age=100, used=50), key(NEW, age=1), key(OTHER, user="nobody", age=7, used=1)]
    statuses = {"web1": EC2, "web2": UNKNOWN}
    report = _audit.audit(keys, APP, statuses, "90", 45, NOW)
    assert report["max_age_days"] == 90 and report["unused_days"] == 45 and report["hosts"] == statuses
    assert report["findings"] == {
        "due": [OLD], "never_used": [NEW], "unused": [OLD], "two_active_keys": ["app"], "no_consumer": [OTHER],
        "instance_role": [OLD, NEW], "ec2_hosts": ["web1"], "ec2_unknown_hosts": ["web2"]}
    json.dumps(report)  # plain data: key ids, dates, hosts and paths; the keys carry no secret
    assert _audit.summary_lines(report) == [
        "3 keys: due 1, never_used 1, unused 1, two_active_keys 1, no_consumer 1, instance_role 2",
        "EC2 instances (could use an instance role): web1",
        "EC2 unknown (set audit_ec2_instance to say): web2"]


def test_lines_name_use_due_holders_and_advice():
    keys = [key(OLD, age=100, used=1, service="s3"), key(NEW, user="nobody", age=1)]
    found = _audit.entries(keys, {"app": held(("web1", "app"))}, {}, 90, 45, NOW)
    assert _audit.lines(found, 90) == [
        "app %s Active, 100 days old, last used %s (s3, ?), DUE (rotate_max_age_days 90), held by app on web1"
        % (OLD, found[0]["last_used_date"]),
        "nobody %s Active, 1 days old, never used" % NEW,
        "  - never_used: never used in the 1 days since it was created: if nothing needs it, deactivate and delete it",
        "  - no_consumer: no consumer in the inventory holds a key of nobody: what uses it is not rotated by "
        "rekey.aws; add its consumers or retire it"]
    assert _audit.lines([], 90) == ["no access keys"]


def test_a_key_held_by_a_whole_fleet_keeps_short_lines():
    fleet = ["web%02d" % i for i in range(1, 8)]
    by_user = {"app": held(*[(h, "app") for h in fleet]) + held(("web01", "env"))}
    statuses = dict((h, EC2) for h in fleet)
    [k] = _audit.entries([key(OLD, age=10, used=1)], by_user, statuses, 90, 45, NOW)
    assert _audit.line(k, 90).endswith("held by app on web01, web02, web03, web04, web05 and 2 more; env on web01")
    [advice] = k["findings"]
    assert advice["message"] == (
        "web01, web02, web03, web04, web05 and 2 more are EC2 instances (audit_ec2_instance: true): give them an "
        "instance role and drop this key: no other host holds it (consumers app on web01, web02, web03, web04, "
        "web05 and 2 more; env on web01)")
