# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

# Internal to rekey.aws: not a public API, may change without notice.
"""Pure logic of what happened: the outcome of each host after distribute (updated, failed,
rolled back, not reached), the failed health checks in one line each, and the end state of each
user after finish (rotated, retired, old key in use, failed after deactivation, rolled back,
rollback incomplete), with the phase each reached (one of _rotation.PHASES).

Results of Ansible tasks come in as the plain dicts they register (item, failed, unreachable,
status, msg, ...). Dates are passed in; no clock is read. No AWS call, no boto3 import."""

from ansible_collections.rekey.aws.plugins.module_utils._keys import utc

HOST_STATUSES = ("started", "updated", "failed", "rolled_back", "rollback_failed", "not_reached")
NOT_REACHED = {"status": "not_reached", "phase": "none", "failure": {}}


def _text(value):
    return "" if value is None else str(value)


def stop_rollout(outcomes):
    """True once a host of the rollout ended in anything but updated: the next batch stops."""
    return any(o and o["status"] != "updated" for o in outcomes.values())


def gather(targets, host_outcomes):
    """The outcome of every host of the rollout; a host never heard from is not_reached."""
    return dict((h, host_outcomes.get(h) or dict(NOT_REACHED)) for h in targets)


def rollout_ok(prepare_failure, outcomes):
    return not prepare_failure and all(o["status"] == "updated" for o in outcomes.values())


def retiring(users):
    """Users whose old key finish retires after a complete rollout."""
    return [u for u, p in users.items() if p["action"] in ("rotate", "retire")]


def distributed_phase(p):
    """The phase recorded once every host has the new key: a rotation resumed at its finish keeps
    the phase it was resumed from (old_deactivated stays)."""
    r = p.get("resume") or {}
    return r["phase"] if r.get("mode") == "finish" else "distributed"


def old_keys_in_use(users, retiring_, keys_after, cutover):
    """{user: message} for the old keys used after the cutover (ISO time): something outside the
    inventory still uses them, so they stay Active."""
    out = {}
    for u in retiring_:
        for k in keys_after:
            if (k["access_key_id"] == users[u]["old_key_id"] and k.get("last_used_date")
                    and utc(k["last_used_date"]) > utc(cutover)):
                out[u] = ("IAM user %s: the old key %s was used at %s by %s in %s, after the cutover at %s: something "
                          "outside the inventory still uses it. It stays Active; the hosts keep the new key. Find that "
                          "consumer, move it to %s, then retire the old key with rotate_retire_key_ids."
                          % (u, k["access_key_id"], k["last_used_date"], k.get("last_used_service") or
                             "an unknown service", k.get("last_used_region") or "an unknown region", cutover,
                             users[u]["target_key_id"]))
    return out


def deactivated(retiring_, in_use, now):
    """The update of each retiring user after the old keys not in use were deactivated at `now`
    (ISO time). A key in use stays Active and its rotation at distributed."""
    out = {}
    for u in retiring_:
        if u in in_use:
            out[u] = {"phase": "distributed", "result": "old_key_in_use", "message": in_use[u]}
        else:
            out[u] = {"phase": "old_deactivated", "deactivated_at": now}
    return out


def done_users(retiring_, in_use, health_failures_):
    """Users whose every consumer passed the re-check without the old key."""
    failing = [f["iam_user"] for f in health_failures_]
    return [u for u in retiring_ if u not in in_use and u not in failing]


def checked(done):
    """From here a failure leaves these old keys Inactive (finish does not reactivate them)."""
    return dict((u, {"old_key_checked": True}) for u in done)


def retired(users, retiring_, in_use, health_failures_):
    """The end state of each retiring user whose old key was deactivated: reactivated after a
    failed re-check (back at distributed), or retired (rotated, or retired when a named key)."""
    out = {}
    for u in retiring_:
        if u in in_use:
            continue
        failing = [f for f in health_failures_ if f["iam_user"] == u]
        if failing:
            out[u] = {"phase": "distributed", "result": "failed_after_deactivation", "failures": failing,
                      "message": "IAM user %s: after deactivating %s, %s. The old key was reactivated; the hosts keep "
                                 "%s." % (u, users[u]["old_key_id"], "; ".join(f["output"] for f in failing),
                                          users[u]["target_key_id"])}
        else:
            out[u] = {"phase": "old_retired", "result": "rotated" if users[u]["action"] == "rotate" else "retired",
                      "message": ""}
    return out


def unfinished(users, retiring_, in_use):
    """Retiring users not at an end state nor stopped on purpose, whose old key must be reactivated
    when retiring fails unexpectedly. One whose fleet passed its re-check without the old key is
    not: it stays Inactive and a re-run deletes it."""
    return [u for u in retiring_ if u not in in_use and "result" not in users[u]
            and not users[u].get("old_key_checked")]


def retire_failed_at(task_name, failed_result):
    """How an unexpected failure while retiring is named: the task, and each failed item's error."""
    msgs = [r.get("msg") for r in failed_result.get("results", []) if r.get("failed")]
    return 'retiring the old key failed at "%s": %s' % (task_name, "; ".join(
        _text(m) for m in (msgs or [failed_result.get("msg", "failed")])))


def retire_failure(users, retiring_, reactivations, failed_at):
    """The update of each user after an unexpected failure while retiring.

    reactivations: one dict per user whose old key was set Active again: user, succeeded, changed,
    msg."""
    out = {}
    for r in reactivations:
        p = users[r["user"]]
        if r["changed"]:
            state = " was reactivated"
        elif r["succeeded"]:
            state = " is still Active"
        else:
            state = " could not be reactivated: %s" % _text(r.get("msg", ""))
        out[r["user"]] = {"result": "failed", "phase": "distributed" if r["succeeded"] else p["phase"],
                          "message": "IAM user %s: %s. The old key %s%s; the hosts keep %s."
                                     % (r["user"], failed_at, p["old_key_id"], state, p["target_key_id"])}
    for u in retiring_:
        if users[u].get("old_key_checked"):
            out[u] = {"result": "failed",
                      "message": "IAM user %s: %s. The old key %s stays Inactive: every host passed its check without "
                                 "it. Run again to delete it." % (u, failed_at, users[u]["old_key_id"])}
    return out


def rollback_hosts(outcomes):
    """The hosts a failed rollout puts back: those this run updated or started to update."""
    return [h for h, o in outcomes.items() if o["status"] in ("updated", "started")]


def restored(outcomes, failed_hosts, problems):
    """The outcome update of the hosts put back after a failed rollout."""
    out = {}
    for h in rollback_hosts(outcomes):
        out[h] = {"status": "rollback_failed" if h in failed_hosts else
                  ("rolled_back" if outcomes[h]["phase"] in ("writing", "checked") else "failed"),
                  "rollback": [p for p in problems if p.startswith(h + ":")]}
    return out


def doubtful_hosts(outcomes):
    """Hosts that may hold the new key: not put back, or never heard from."""
    return [h for h, o in outcomes.items() if o["status"] not in ("rolled_back", "failed", "not_reached")]


def discardable_new_keys(users, entries, outcomes, keep_new):
    """Users whose new key a failed rollout deletes: no host may hold it, and it is not the key of a
    resumed rotation whose killed run may have updated hosts."""
    doubtful = doubtful_hosts(outcomes)
    held = [e["iam_user"] for e in entries if e["host"] in doubtful]
    return [u for u, p in users.items() if p["new_key_id"] and u not in keep_new and u not in held]


def rolled_back(users, gone, doubtful):
    """The end state of each rotating user after a failed rollout; gone: users whose new key was
    deleted."""
    out = {}
    for u, p in users.items():
        if p["action"] != "rotate":
            continue
        kept = bool(p["new_key_id"]) and u not in gone
        if kept:
            message = ("IAM user %s: the new key %s is kept Active because %s may hold it; the old key %s is still "
                       "Active. Check those hosts, then run again."
                       % (u, p["new_key_id"], ", ".join(doubtful), p["old_key_id"]))
        else:
            message = "IAM user %s: rolled back; every host holds the old key %s, which stayed Active%s." % (
                u, p["old_key_id"], ", and the new key %s was deleted" % p["new_key_id"] if p["new_key_id"] else "")
        out[u] = {"result": "rollback_incomplete" if kept else "rolled_back",
                  "phase": p["phase"] if kept else "rolled_back", "message": message}
    return out


def kept_new_keys(users, keep_new):
    """Resumed rotations whose new key stays after a failed rollout: hosts the killed run updated
    may hold it."""
    out = {}
    for u in keep_new:
        p = users[u]
        if p["action"] != "rotate":
            continue
        out[u] = {"result": "rollback_incomplete",
                  "message": "IAM user %s: resumed rotation %s did not complete; its new key %s stays Active next to "
                             "the old key %s because hosts updated by the killed run may hold it. Fix what failed, "
                             "then run again to resume." % (u, p["resume"]["run_id"], p["new_key_id"], p["old_key_id"])}
    return out


def merge(users, update):
    """The users with a per-user update applied (a shallow merge per user)."""
    out = dict(users)
    for u, fields in update.items():
        out[u] = dict(out[u], **fields)
    return out
