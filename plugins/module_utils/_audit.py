# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

# Internal to rekey.aws: not a public API, may change without notice.
"""Pure logic of the audit (playbooks/audit.yml): which hosts hold each user's key, which keys are
due, and the lines shown. Plain dicts in and out; no AWS call, no boto3 import."""

from ansible_collections.rekey.aws.plugins.module_utils import _consumers
from ansible_collections.rekey.aws.plugins.module_utils._coerce import whole


def holders(hosts, hostvars):
    """{user: [hosts]}: the hosts (each once, in inventory order) with a consumer of the user's key."""
    out = {}
    for host in hosts:
        for _index, c in _consumers.mappings(hostvars.get(host, {}).get("rotate_consumers")):
            user = c.get("iam_user")
            if isinstance(user, str) and user and host not in out.setdefault(user, []):
                out[user].append(host)
    return out


def entries(keys, max_age_days, holders_):
    """Each key (access_key_info's shape) with due (Active and at least max_age_days old) and
    held_by (the hosts holding its user's key)."""
    max_age = whole(max_age_days)
    return [dict(k, due=k["status"] == "Active" and whole(k["age_days"]) >= max_age,
                 held_by=holders_.get(k["user_name"], [])) for k in keys]


def line(k, max_age_days):
    if k.get("last_used_date"):
        use = "last used %s (%s, %s)" % (k["last_used_date"], k.get("last_used_service") or "?",
                                         k.get("last_used_region") or "?")
    else:
        use = "never used"
    due = ", DUE (rotate_max_age_days %s)" % whole(max_age_days) if k["due"] else ""
    return "%s %s %s, %s days old, %s%s" % (k["user_name"], k["access_key_id"], k["status"], k["age_days"], use, due)


def lines(entries_, max_age_days):
    return [line(k, max_age_days) for k in entries_] or ["no access keys"]
