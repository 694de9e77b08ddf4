# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

# Internal to rekey.aws: not a public API, may change without notice.
"""Pure logic of the audit (playbooks/audit.yml): which consumers and hosts hold each key, whether
a host is an EC2 instance, the findings on each key and the lines shown. Plain dicts in and out;
no AWS call, no boto3 import, no file read."""

import re

from ansible_collections.rekey.aws.plugins.module_utils import _consumers
from ansible_collections.rekey.aws.plugins.module_utils._coerce import to_json, whole
from ansible_collections.rekey.aws.plugins.module_utils._keys import utc

EC2_VAR = "audit_ec2_instance"
UNUSED_DAYS_VAR = "audit_unused_days"

# The findings, in the order they are shown.
DUE = "due"
NEVER_USED = "never_used"
UNUSED = "unused"
TWO_ACTIVE = "two_active_keys"
NO_CONSUMER = "no_consumer"
INSTANCE_ROLE = "instance_role"
FINDINGS = (DUE, NEVER_USED, UNUSED, TWO_ACTIVE, NO_CONSUMER, INSTANCE_ROLE)

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
# An EC2 instance's id as Nitro instances give it in the board's asset tag.
_INSTANCE_ID_RE = re.compile(r"\Ai-[0-9a-f]{8,17}\Z")


def consumers_by_user(hosts, hostvars):
    """{user: [{host, name, path, format}]}: every consumer of these hosts (rotate_consumers, with
    the role's defaults) that names an IAM user, in inventory order."""
    out = {}
    for host in hosts:
        for _index, raw in _consumers.mappings(hostvars.get(host, {}).get("rotate_consumers")):
            c = _consumers.with_defaults(raw)
            user = c.get("iam_user")
            if isinstance(user, str) and user:
                out.setdefault(user, []).append(
                    {"host": host, "name": c.get("name"), "path": c.get("path"), "format": c["format"]})
    return out


def ec2_setting_problem(host, value):
    """A message when the host's audit_ec2_instance is set but is not a boolean, else None."""
    if value is None or isinstance(value, bool) or (isinstance(value, str) and value.lower() in _TRUE + _FALSE):
        return None
    return "host %s: %s %s is not a boolean: expected true or false, or leave it unset to read it from the host" % (
        host, EC2_VAR, to_json(value))


def _setting(value):
    if isinstance(value, bool):
        return value
    return value.lower() in _TRUE


def ec2_from_readings(readings):
    """(ec2, evidence) from what the host says (host_dmi_info's readings; a value is None when it
    could not be read): True when DMI or Xen names EC2, False when the machine names another
    vendor, None (unknown) when nothing was read or a Xen guest's UUIDs could not be read."""
    readings = readings or {}
    vendor = (readings.get("sys_vendor") or "").strip()
    tag = (readings.get("board_asset_tag") or "").strip()
    uuids = [(f, (readings.get(f) or "").strip().lower()) for f in ("product_uuid", "hypervisor_uuid")]
    if vendor == "Amazon EC2":
        return True, "DMI sys_vendor %s" % to_json(vendor)
    if _INSTANCE_ID_RE.match(tag):
        return True, "DMI board_asset_tag %s (an instance id)" % to_json(tag)
    for field, uuid in uuids:
        # Some Xen instances give the UUID's first field little-endian: 45e12aec-... for ec2ae145-...
        if uuid.startswith("ec2") or (uuid[6:8] + uuid[4:6] + uuid[2:4] + uuid[0:2]).startswith("ec2"):
            return True, "%s starts with ec2" % field
    read_uuids = [f for f, uuid in uuids if uuid]
    if vendor and (not vendor.lower().startswith("xen") or read_uuids):
        not_ec2 = ", %s not ec2" % "/".join(read_uuids) if read_uuids else ""
        return False, "DMI sys_vendor %s%s" % (to_json(vendor), not_ec2)
    if vendor:
        return None, "DMI sys_vendor %s (Xen) and no readable UUID" % to_json(vendor)
    if read_uuids:
        return False, "%s not ec2, no DMI sys_vendor" % "/".join(read_uuids)
    return None, "no DMI vendor, asset tag or UUID readable"


def host_status(setting, result):
    """{ec2: True/False/None, source}: a host's audit_ec2_instance when set, else what
    host_dmi_info read on it (result: its registered result, None when it did not run)."""
    if setting is not None:
        return {"ec2": _setting(setting), "source": "%s: %s" % (EC2_VAR, to_json(setting))}
    if not result or result.get("unreachable") or result.get("failed") or "readings" not in result:
        why = "unreachable" if (result or {}).get("unreachable") else "not read"
        if result and result.get("msg") and not result.get("unreachable"):
            why = "not read: %s" % result["msg"]
        return {"ec2": None, "source": "%s; set %s" % (why, EC2_VAR)}
    ec2, evidence = ec2_from_readings(result["readings"])
    return {"ec2": ec2, "source": evidence if ec2 is not None else "%s; set %s" % (evidence, EC2_VAR)}


def days_since(value, now):
    return max(0, int((utc(now) - utc(value)).total_seconds() // 86400))


# Hosts named in a line before "and N more": a key shared by a whole fleet keeps a short line.
SHOWN_HOSTS = 5


def host_list(hosts, sep=", "):
    shown = sep.join(hosts[:SHOWN_HOSTS])
    return shown if len(hosts) <= SHOWN_HOSTS else "%s and %d more" % (shown, len(hosts) - SHOWN_HOSTS)


def _consumer_names(held):
    """Each consumer name once, with its hosts: "app on web1, web2; env on web1"."""
    names = []
    for c in held:
        if c["name"] not in names:
            names.append(c["name"])
    return "; ".join("%s on %s" % (n, host_list([c["host"] for c in held if c["name"] == n])) for n in names)


def key_findings(key, held, statuses, active_of_user, max_age_days, unused_days, now):
    """The findings on one key, each {finding, message}, in FINDINGS order.
    held: the consumers of its user; statuses: {host: host_status()}; active_of_user: how many
    Active keys its user has."""
    out = []
    active = key["status"] == "Active"
    # A key the inventory's consumers hold is deleted by a rotation, never on the audit's word.
    idle_advice = ("its consumers hold it: check that they still need it, else remove them and retire it"
                   if active and held else "if nothing needs it, deactivate and delete it")
    if active and whole(key["age_days"]) >= whole(max_age_days):
        out.append((DUE, "due for rotation: %s days old (rotate_max_age_days %s)"
                    % (key["age_days"], whole(max_age_days))))
    if not key.get("last_used_date"):
        out.append((NEVER_USED, "never used in the %s days since it was created: %s" % (key["age_days"],
                                                                                        idle_advice)))
    else:
        idle = days_since(key["last_used_date"], now)
        if idle >= whole(unused_days):
            out.append((UNUSED, "unused for %s days (%s %s): %s" % (idle, UNUSED_DAYS_VAR, whole(unused_days),
                                                                    idle_advice)))
    if active and active_of_user >= 2:
        out.append((TWO_ACTIVE, "its user %s has two Active keys: retire one (a rotation needs "
                                "rotate_retire_key_ids to go on)" % key["user_name"]))
    if not held:
        out.append((NO_CONSUMER, "no consumer in the inventory holds a key of %s: what uses it is not "
                                 "rotated by rekey.aws; add its consumers or retire it" % key["user_name"]))
    ec2_hosts = [h for h in _hosts(held) if statuses.get(h, {}).get("ec2") is True]
    if active and ec2_hosts:
        on_ec2 = [c for c in held if c["host"] in ec2_hosts]
        whole_key = len(ec2_hosts) == len(_hosts(held))
        out.append((INSTANCE_ROLE, "%s %s (%s): give %s an instance role and drop %s (consumers %s)"
                    % (host_list(ec2_hosts), "is an EC2 instance" if len(ec2_hosts) == 1 else "are EC2 instances",
                       host_list(sorted(set(statuses[h]["source"] for h in ec2_hosts)), "; "),
                       "it" if len(ec2_hosts) == 1 else "them",
                       "this key: no other host holds it" if whole_key else "the key there",
                       _consumer_names(on_ec2))))
    return [{"finding": f, "message": m} for f, m in out]


def _hosts(held):
    out = []
    for c in held:
        if c["host"] not in out:
            out.append(c["host"])
    return out


def entries(keys, by_user, statuses, max_age_days, unused_days, now):
    """Each key (access_key_info's shape) with due, consumers (for an Active key, the inventory's
    consumers of its user: an Inactive key authenticates nothing), held_by (their hosts) and
    findings. by_user: consumers_by_user(); statuses: {host: host_status()}."""
    active = {}
    for k in keys:
        if k["status"] == "Active":
            active[k["user_name"]] = active.get(k["user_name"], 0) + 1
    out = []
    for k in keys:
        held = by_user.get(k["user_name"], [])
        mine = held if k["status"] == "Active" else []
        found = key_findings(k, held, statuses, active.get(k["user_name"], 0), max_age_days, unused_days, now)
        out.append(dict(k, due=any(f["finding"] == DUE for f in found), consumers=mine, held_by=_hosts(mine),
                        findings=found))
    return out


def summary(entries_, statuses):
    """Per finding the key ids (users for two_active_keys), and the hosts by EC2 status."""
    out = dict((f, []) for f in FINDINGS)
    for k in entries_:
        for f in k["findings"]:
            item = k["user_name"] if f["finding"] == TWO_ACTIVE else k["access_key_id"]
            if item not in out[f["finding"]]:
                out[f["finding"]].append(item)
    out["ec2_hosts"] = sorted(h for h, s in statuses.items() if s["ec2"] is True)
    out["ec2_unknown_hosts"] = sorted(h for h, s in statuses.items() if s["ec2"] is None)
    return out


def audit(keys, by_user, statuses, max_age_days, unused_days, now):
    """The whole audit as the JSON report holds it (no secret: key ids, dates, hosts, paths)."""
    found = entries(keys, by_user, statuses, max_age_days, unused_days, now)
    return {"max_age_days": whole(max_age_days), "unused_days": whole(unused_days), "access_keys": found,
            "hosts": statuses, "findings": summary(found, statuses)}


def line(k, max_age_days):
    if k.get("last_used_date"):
        use = "last used %s (%s, %s)" % (k["last_used_date"], k.get("last_used_service") or "?",
                                         k.get("last_used_region") or "?")
    else:
        use = "never used"
    due = ", DUE (rotate_max_age_days %s)" % whole(max_age_days) if k["due"] else ""
    held = ", held by %s" % _consumer_names(k["consumers"]) if k.get("consumers") else ""
    return "%s %s %s, %s days old, %s%s%s" % (k["user_name"], k["access_key_id"], k["status"], k["age_days"], use,
                                              due, held)


def lines(entries_, max_age_days):
    out = []
    for k in entries_:
        out.append(line(k, max_age_days))
        out.extend("  - %s: %s" % (f["finding"], f["message"]) for f in k.get("findings", ()) if f["finding"] != DUE)
    return out or ["no access keys"]


def summary_lines(report):
    """The closing lines: how many keys each finding concerns, and the hosts of unknown platform."""
    f = report["findings"]
    counts = ", ".join("%s %d" % (name, len(f[name])) for name in FINDINGS)
    out = ["%d keys: %s" % (len(report["access_keys"]), counts)]
    if f["ec2_hosts"]:
        out.append("EC2 instances (could use an instance role): %s" % host_list(f["ec2_hosts"]))
    if f["ec2_unknown_hosts"]:
        out.append("EC2 unknown (set %s to say): %s" % (EC2_VAR, host_list(f["ec2_unknown_hosts"])))
    return out
