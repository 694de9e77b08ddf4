# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

# Internal to rekey.aws: not a public API, may change without notice.
"""Pure logic of the plan, decided before the first IAM write: per user which key is old, what
to do (rotate, retire a named key, or none), which Inactive key to delete to free the second slot,
and every refusal. Its phase is one of _rotation.PHASES, the names recorded in the IAM tags.
Plain dicts in and out; `now` is passed in. No AWS call, no boto3 import."""

import datetime

from ansible_collections.rekey.aws.plugins.module_utils import _consumers, _resume, _rollout, _rotation
from ansible_collections.rekey.aws.plugins.module_utils._coerce import flag, whole
from ansible_collections.rekey.aws.plugins.module_utils._keys import MAX_KEYS_PER_USER, utc

ACTIONS = ("none", "rotate", "retire")
# The plan's phase when a resumed rotation goes on (see _resume).
RESUMED_PHASE = {"continue": "key_stored", "finish": "distributed"}


def describe(key):
    """A key in a refusal: id, status, creation and last use."""
    if key.get("last_used_date"):
        use = "last used %s" % key["last_used_date"]
        if key.get("last_used_service"):
            use += " by %s in %s" % (key["last_used_service"], key.get("last_used_region"))
    elif key.get("last_used_read") is False:
        use = "last use not read"
    else:
        use = "never used"
    return "%s (%s, created %s, %s)" % (key["access_key_id"], key["status"], key["create_date"], use)


def prune_cutoff(now, prune_unused_days):
    """An Inactive key last used (or, never used, created) at or before this moment may be deleted
    to free the second slot. Whole seconds, like the key dates."""
    start = int(utc(now).timestamp()) - whole(prune_unused_days) * 86400
    return datetime.datetime.fromtimestamp(start, datetime.timezone.utc)


def new_user(user, keys):
    return {"user_name": user, "action": "none", "reason": "", "old_key_id": None, "old_key": None,
            "target_key_id": None, "new_key_id": None, "prune_key_ids": [], "phase": "planned",
            "keys_before": [k["access_key_id"] for k in keys], "hosts": []}


def _check_keys(user, keys):
    if len(keys) > MAX_KEYS_PER_USER:
        raise ValueError("IAM user %s has %d keys (%s): expected at most %d, the most IAM allows"
                         % (user, len(keys), ", ".join(k["access_key_id"] for k in keys), MAX_KEYS_PER_USER))


def plan_user(user, keys, settings, now):
    """The plan of one user from its keys (oldest first, the shape of _keys.normalize_key).

    settings: rotate_max_age_days, rotate_prune_unused_days, rotate_force, rotate_retire_key_ids.
    Returns (plan, errors): any error refuses the whole run before its first write."""
    _check_keys(user, keys)
    max_age = whole(settings["rotate_max_age_days"])
    prune_days = whole(settings["rotate_prune_unused_days"])
    force = flag(settings["rotate_force"])
    retire_ids = settings["rotate_retire_key_ids"]
    active = [k for k in keys if k["status"] == "Active"]
    retire = [k for k in active if k["access_key_id"] in retire_ids]
    p = new_user(user, keys)
    errors = []
    if not active:
        errors.append("IAM user %s has no Active access key, so there is nothing to rotate from (keys: %s). Nothing "
                      "was changed." % (user, "; ".join(describe(k) for k in keys) or "none"))
    elif len(active) == 2:
        if len(retire) == 1:
            keep = [k for k in active if k["access_key_id"] != retire[0]["access_key_id"]][0]
            p.update(action="retire", old_key_id=retire[0]["access_key_id"], old_key=retire[0],
                     target_key_id=keep["access_key_id"],
                     reason="two Active keys; rotate_retire_key_ids names %s to retire, %s stays"
                            % (retire[0]["access_key_id"], keep["access_key_id"]))
        else:
            errors.append(
                "IAM user %s has two Active access keys: %s; %s. Nothing was changed: a third key cannot be created "
                "and it is not known which one is in use. %s"
                % (user, describe(active[0]), describe(active[1]),
                   "rotate_retire_key_ids names both: name only the one to retire." if retire else
                   "Put the key to retire in rotate_retire_key_ids (it will be deactivated, the fleet re-checked, then "
                   "deleted) and run again."))
    else:
        old = active[0]
        if force or whole(old["age_days"]) >= max_age:
            p.update(action="rotate", old_key_id=old["access_key_id"], old_key=old,
                     reason="forced (rotate_force)" if force else "key %s is %s days old (rotate_max_age_days %d)"
                     % (old["access_key_id"], old["age_days"], max_age))
            cutoff = prune_cutoff(now, prune_days)
            for other in keys:
                if other["status"] != "Inactive":
                    continue
                if utc(other.get("last_used_date") or other["create_date"]) <= cutoff:
                    p["prune_key_ids"].append(other["access_key_id"])
                else:
                    errors.append(
                        "IAM user %s needs its second key slot for the new key, but it holds the Inactive key %s, "
                        "used or created less than %d days ago (rotate_prune_unused_days). Nothing was changed: "
                        "delete that key yourself if nothing needs it, or wait." % (user, describe(other), prune_days))
        else:
            p.update(reason="key %s is %s days old, under rotate_max_age_days %d"
                     % (old["access_key_id"], old["age_days"], max_age),
                     old_key_id=old["access_key_id"], target_key_id=old["access_key_id"])
    return p, errors


def plan_users(users, keys, settings, now):
    """The plan of every selected user: {users: {user: plan}, errors}. keys: the keys the plan sees
    (_resume.resume's keys_seen) of every selected user."""
    out, errors = {}, []
    for user in users:
        p, problems = plan_user(user, [k for k in keys if k["user_name"] == user], settings, now)
        out[user] = p
        errors.extend(problems)
    known = [k["access_key_id"] for k in keys]
    for key_id in settings["rotate_retire_key_ids"]:
        if key_id not in known:
            errors.append("rotate_retire_key_ids names %s, which is not a key of any user being rotated (%s)"
                          % (key_id, ", ".join(users)))
    return {"users": out, "errors": errors}


def apply_resume(users, resumed):
    """The plan of every user with the resume decision applied: a resumed rotation keeps the new
    key it recorded (and goes on from key_stored, or from distributed when every host has it); one
    that is over only has its state cleared (nothing to do, its consumers are kept)."""
    out = {}
    for user, p in users.items():
        p = dict(p)
        r = resumed.get(user)
        if r is not None:
            p["resume"] = r
            if r["mode"] == "done":
                p.update(action="none", reason=r["message"], old_key_id=None, new_key_id=None,
                         target_key_id=r["new_key_id"], prune_key_ids=[], hosts=[])
            elif r["mode"] != "none" and p["action"] == "rotate":
                p["reason"] = r["message"]
                if r["mode"] in RESUMED_PHASE:
                    p.update(new_key_id=r["new_key_id"], target_key_id=r["new_key_id"], prune_key_ids=[],
                             phase=RESUMED_PHASE[r["mode"]])
        out[user] = p
    return out


def mode(p):
    return (p.get("resume") or {}).get("mode", "none")


def first_phase(p):
    """The phase this run records first (with its lock) for a rotation it starts or carries on:
    never back. A resumed rotation whose key is stored is at distributing from here on, as a new
    one is once its key is stored: no further write comes before the hosts get it."""
    if p["phase"] == "planned":
        return "planned"
    recorded = p["resume"]["phase"]
    return "distributing" if recorded in ("key_created", "key_stored", "key_verified") else recorded


def due_users(users):
    """The users that get a new key (or finish getting one, when resumed)."""
    return [u for u, p in users.items() if p["action"] == "rotate"]


def create_users(users):
    """The users whose new key this run creates."""
    return [u for u, p in users.items() if p["action"] == "rotate" and p["phase"] == "planned"]


def verify_users(users):
    """The users whose new key (created, or stored by a resumed run) must be proven to authenticate
    before any host gets it."""
    return [u for u, p in users.items() if p["action"] == "rotate" and p["phase"] == "key_stored"]


def locked_users(users):
    """The users this run locks and records the state of (retiring a named key writes no state)."""
    return due_users(users) + [u for u, p in users.items() if mode(p) == "done"]


def keep_new_users(users):
    """Resumed rotations whose new key hosts may hold already: a rollback keeps that key."""
    return [u for u, p in users.items()
            if mode(p) in ("continue", "finish") and p["resume"]["phase"] in ("distributing", "distributed",
                                                                              "old_deactivated")]


def resumed_users(users):
    return [u for u, p in users.items() if mode(p) in ("continue", "finish", "done")]


def discards(users):
    """(user, key id) of the new keys killed runs created that no host can have (or, reverted,
    no host has any more): deleted first."""
    return [(u, p["resume"]["discard_key_id"]) for u, p in users.items() if mode(p) in _resume.DISCARDS]


def revert_hosts(users, entries_):
    """The hosts holding a consumer of a rotation to revert (its new key's secret is lost): each
    goes back to the old key from the killed run's backups before that key is deleted."""
    return _rollout.unique_hosts(entries_, [u for u, p in users.items() if mode(p) == "revert"])


def max_age_for_create(p, settings):
    """max_age_days of the create call: the old key is due, so it does not satisfy it and exactly
    one key is created (a resumed rotation was found due by the killed run)."""
    if flag(settings["rotate_force"]) or mode(p) != "none":
        return 0
    return whole(settings["rotate_max_age_days"])


def planned_writes(plan, retire="delete"):
    """The IAM key writes the plan leads to when all goes well, in order, as (what, user, key id):
    "discard" (a new key a killed run created that no host can have: deactivated, then deleted),
    "prune" (an unused Inactive key deleted to free the second slot), "create", then "deactivate"
    and, with retire=delete, "delete" of the old key after the rollout. Nothing when the plan
    refuses. The lock and the state tags are not counted."""
    if plan["errors"]:
        return []
    users = plan["users"]
    out = [("discard", u, k) for u, k in discards(users)]
    for u, p in users.items():
        if p["action"] == "rotate":
            out.extend(("prune", u, k) for k in p["prune_key_ids"])
    out.extend(("create", u, None) for u in create_users(users))
    for u, p in users.items():
        if p["action"] in ("rotate", "retire"):
            out.append(("deactivate", u, p["old_key_id"]))
            if retire == "delete":
                out.append(("delete", u, p["old_key_id"]))
    return out


def decide(users, keys, recorded, store_holds, settings, now, hosts, all_hosts, hostvars, run_id):
    """The whole plan of a run, before its first write: the resume decision, the plan of every user,
    the consumer entries and the hosts of the rollout. Returns {errors, users, entries, targets,
    held_in_aws}, held_in_aws saying whether a consumer's key is held in SSM or Secrets Manager
    (written from the controller before the canary); any error refuses the run.

    users: the selected users; keys: their keys (_keys.normalize_key shape, oldest first);
    recorded: {user: rotation_state_info entry}; store_holds: {user: whether the store holds the
    new key recorded at phase key_created}; settings: the rotate_* role variables; hosts: the hosts
    rotate_hosts matches; all_hosts: every host of the inventory; hostvars: {host:
    {"rotate_consumers": ..., "inventory_dir": ...}} of all_hosts."""
    resumed = _resume.resume(users, recorded, keys, store_holds, settings["rotate_max_age_days"])
    planned = plan_users(users, resumed["keys_seen"], settings, now)
    busy = _rollout.busy_users(planned["users"])
    entries = _rollout.entries(busy, hosts, hostvars, run_id, settings["rotate_backup_dir"])
    errors = planned["errors"] + _rollout.outside_problems(busy, hosts, all_hosts, settings["rotate_hosts"], hostvars)
    for user in busy:
        planned["users"][user]["hosts"] = _rollout.unique_hosts(entries, [user])
    users_ = apply_resume(planned["users"], resumed["users"])
    kept, targets = _rollout.rollout(users_, entries)
    return {"errors": errors + resumed["errors"], "users": users_, "entries": kept, "targets": targets,
            "held_in_aws": any(_consumers.held_in_aws(e) for e in kept)}


def foreign_lock_problems(users, recorded, takeover):
    """A refusal for each user whose named key is to be retired while another run holds its live
    lock (rotations are refused by the lock itself, which they take)."""
    if flag(takeover):
        return []
    out = []
    for u, p in users.items():
        lock = (recorded.get(u) or {}).get("lock")
        if p["action"] == "retire" and lock and not lock.get("expired"):
            out.append("Nothing was changed. %s." % _rotation.locked_message(u, lock))
    return out


def todo(users, settings, entries_=()):
    """What prepare writes, in order, from the plan: the users to lock, the hosts to put back on
    the old key of a rotation to revert, the new keys killed runs created to discard, the rotations
    over (state cleared), the state recorded first, the unused Inactive keys to delete, and the
    keys to create (with the max_age_days of the create call). entries_: the plan's entries."""
    rotating = [p for p in users.values() if p["action"] == "rotate"]
    return {
        "locked": locked_users(users),
        "revert_hosts": revert_hosts(users, entries_),
        "discards": [{"user_name": u, "key_id": k} for u, k in discards(users)],
        "done": [u for u, p in users.items() if mode(p) == "done"],
        "recorded": [{"user_name": p["user_name"], "phase": first_phase(p), "old_key_id": p["old_key_id"],
                      "new_key_id": p["new_key_id"]} for p in rotating],
        "prunes": [{"user_name": p["user_name"], "key_id": k} for p in rotating for k in p["prune_key_ids"]],
        "creates": [{"user_name": u, "max_age_days": max_age_for_create(users[u], settings)}
                    for u in create_users(users)],
        "resumed_messages": [p["resume"]["message"] for p in users.values() if mode(p) != "none"],
        "plan_lines": (["%s: %s: %s" % (p["user_name"], p["action"], p["reason"]) for p in users.values()]
                       or ["No consumer references an IAM user: nothing to do."]),
    }
