# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

# Internal to rekey.aws: not a public API, may change without notice.
"""Pure logic of the rollout: the consumer entries of the users with work to do (each consumer with
its defaults, host, backup path and template source), the hosts that must receive a new key, and
the refusals about hosts left out. Plain dicts in and out; no AWS call, no boto3 import."""

from ansible_collections.rekey.aws.plugins.module_utils import _consumers


def busy_users(users):
    """Users with a key to retire: rotate, or retire a named key."""
    return [u for u, p in users.items() if p["action"] in ("rotate", "retire")]


def entries(busy, hosts, hostvars, run_id, backup_dir):
    """Every consumer of these hosts that holds a key of a busy user, with its defaults and host,
    the path of its backup on the host and the controller path of its template ('' when none)."""
    out = []
    for host in hosts:
        for _index, raw in _consumers.mappings(hostvars.get(host, {}).get("rotate_consumers")):
            if raw.get("iam_user") not in busy:
                continue
            c = _consumers.with_defaults(raw)
            c["host"] = host
            c["backup"] = "%s/%s-%s-%s.bak" % (backup_dir, run_id, host, c["name"])
            c["template_src"] = (_consumers.template_source(c["template"], hostvars[host].get("inventory_dir"))
                                 if c["template"] else "")
            out.append(c)
    return out


def outside_problems(busy, hosts, all_hosts, pattern, hostvars):
    """Hosts outside rotate_hosts that hold a key of a busy user: each would lose a working key
    when the old one is retired."""
    if pattern == "all":
        return []
    out = []
    for host in all_hosts:
        if host in hosts:
            continue
        for _index, raw in _consumers.mappings(hostvars.get(host, {}).get("rotate_consumers")):
            if raw.get("iam_user", "") in busy:
                out.append("host %s holds the key of IAM user %s (consumer %s) but is not in rotate_hosts (%s): it "
                           "would lose a working key when the old one is retired. Widen rotate_hosts or leave that "
                           "user out (rotate_users)." % (host, raw["iam_user"], raw.get("name", "?"), pattern))
    return out


def unique_hosts(entries_, users=None):
    """The hosts of these entries (of these users, when given), each once, in order."""
    out = []
    for e in entries_:
        if (users is None or e["iam_user"] in users) and e["host"] not in out:
            out.append(e["host"])
    return out


def rollout(users, entries_):
    """After the resume decision: the entries kept (busy users, and finished rotations, whose
    backups the killed run may have left) and the targets (hosts of rotations that still need
    their new key distributed). Returns (entries, targets)."""
    done = [u for u, p in users.items() if (p.get("resume") or {}).get("mode") == "done"]
    kept = [e for e in entries_ if e["iam_user"] in busy_users(users) + done]
    spreading = [u for u, p in users.items() if p["action"] == "rotate" and p["phase"] != "distributed"]
    return kept, unique_hosts(kept, spreading)


def left_out_problem(targets, limit_hosts):
    """A refusal when --limit (limit_hosts: the hosts it matches, None without --limit) leaves out
    a host that must receive a new key, else None."""
    if limit_hosts is None:
        return None
    left_out = [h for h in targets if h not in limit_hosts]
    if not left_out:
        return None
    return ("Nothing was changed. --limit leaves out %s, which hold keys of users being rotated; every host holding a "
            "key must be updated in the same run. Choose hosts with rotate_hosts and users with rotate_users instead."
            % ", ".join(left_out))


def with_keys(users, entries_):
    """Every entry with the action, phase and key ids of its user."""
    out = []
    for e in entries_:
        p = users[e["iam_user"]]
        out.append(dict(e, action=p["action"], phase=p["phase"], old_key_id=p["old_key_id"],
                        new_key_id=p["new_key_id"], target_key_id=p["target_key_id"]))
    return out


def host_work(users, entries_, host):
    """What distribute writes on one host: its consumers of users whose new key is verified and
    being distributed."""
    return [e for e in with_keys(users, entries_)
            if e["host"] == host and e["action"] == "rotate" and e["phase"] == "distributing"]
