# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

# Internal to rekey.aws: not a public API, may change without notice.
"""The rotation after the plan, as a state machine: each event folds what a step did into the
plan (rekey.aws.rotation_update calls advance) and says what the next steps do. The decisions are
_prepare's and _outcome's; this only orders them. Plain dicts in and out; no AWS call, never a
secret."""

from ansible_collections.rekey.aws.plugins.module_utils import _host_rollout, _outcome, _plan, _prepare
from ansible_collections.rekey.aws.plugins.module_utils._keys import iso


class ProgressError(Exception):
    """A step's result that stops the run (the message names users and keys, never a secret)."""


def _records(users, names, phase=None):
    """The state writes of these users: user, phase (their own when not given), old and new key."""
    return [{"user_name": u, "phase": phase or users[u]["phase"], "old_key_id": users[u]["old_key_id"],
             "new_key_id": users[u]["new_key_id"]} for u in names]


def _due(users, names):
    due = _plan.due_users(users)
    return [u for u in names if u in due]


def created(plan, created_results, stored_results):
    """After creating every new key and storing each secret. created_results: per user, user_name,
    failed, created, msg and access_key_id; stored_results: per user created, user_name, failed and
    msg (never a secret). Each user's new key id; the users whose stored key is recorded next
    (phase distributing); the keys created but not stored (deleted next); every problem."""
    stored_by = dict((s["user_name"], s) for s in stored_results)
    update, records, discard, problems = {}, [], [], []
    for c in created_results:
        u = c["user_name"]
        update[u] = _prepare.created(c)
        problem = _prepare.create_problem(u, c, None, stored_by.get(u))
        if problem:
            problems.append(problem)
        if update[u]["new_key_id"]:
            (discard if problem else records).append(u)
    users = _outcome.merge(plan["users"], update)
    return dict(plan, users=users), {"records": _records(users, records, "distributing"),
                                     "discard": _records(users, discard), "problems": problems}


def recorded(plan, created_todo, recording):
    """After recording the stored keys (recording: what rotation_lock returned, skipped when there
    was nothing to record): the keys to delete and every problem. A failed record deletes each
    recorded key too: a resume could not tell it from a killed run's."""
    discard, problems = list(created_todo["discard"]), list(created_todo["problems"])
    if recording.get("failed"):
        msg = recording.get("msg") or "rotation_lock failed"
        discard.extend(_records(plan["users"], [r["user_name"] for r in created_todo["records"]]))
        for r in created_todo["records"]:
            problems.append(_prepare.create_problem(r["user_name"], {"created": True, "access_key_id": r["new_key_id"]},
                                                    {"failed": True, "msg": msg}, None))
    return plan, {"discard": discard, "problems": problems}


def discarded(plan, names):
    """The new keys of these users were deleted before any host could get them."""
    users = plan["users"]
    return dict(plan, users=_outcome.merge(users, dict((u, _prepare.new_key_lost(users[u])) for u in names))), {}


def verified(plan, verifying, results):
    """The new keys authenticated: each user at key_verified; the store must hold exactly them."""
    problem = _prepare.store_mismatch(results, plan["users"], verifying)
    if problem:
        raise ProgressError(problem)
    users = _outcome.merge(plan["users"], _prepare.verified(plan["users"], verifying, results))
    # A rotation resumed from distributing stays there: hosts may hold its key already.
    keep_new = _plan.keep_new_users(users)
    return dict(plan, users=users), {"records": _records(users, [u for u in verifying if u not in keep_new])}


def distributing(plan, verifying):
    users = _outcome.merge(plan["users"], _prepare.distributing(verifying))
    return dict(plan, users=users), {}


def gathered(plan, host_outcomes, prepare_failure, now):
    """After the rollout: every host's outcome, whether the rollout is complete, the users whose old
    key is retired, and the state written once every host has its key."""
    outcomes = _outcome.gather(plan["targets"], host_outcomes)
    ok = _outcome.rollout_ok(prepare_failure, outcomes)
    users = plan["users"]
    retiring = _outcome.retiring(users) if ok else []
    records = [dict(r, phase=_outcome.distributed_phase(users[r["user_name"]]))
               for r in _records(users, _plan.due_users(users))] if ok else []
    return dict(plan, outcomes=outcomes, rollout_ok=ok, retiring=retiring, cutover=iso(now), in_use={},
                health_failures=[], recheck_after=0), {"records": records}


def idle_checked(plan, keys_after):
    """After the idle window: an old key used since the cutover stays Active; the others are
    deactivated next."""
    users, retiring = plan["users"], plan["retiring"]
    in_use = _outcome.old_keys_in_use(users, retiring, keys_after, plan["cutover"])
    off = [u for u in retiring if u not in in_use]
    return dict(plan, in_use=in_use), {"deactivate": _records(users, off),
                                       "records": _records(users, _due(users, off), "old_deactivated")}


def deactivated(plan, now, settle_s):
    """Once the old keys not in use are deactivated (at now): the consumers each host re-checks, and
    when (recheck_after, seconds since the epoch): settle_s from now, once IAM has propagated the
    deactivation."""
    update = _outcome.deactivated(plan["retiring"], plan["in_use"], iso(now))
    plan = dict(plan, users=_outcome.merge(plan["users"], update), recheck_after=now.timestamp() + settle_s)
    return plan, {"rechecks": rechecks(plan)}


def rechecks(plan):
    """{host: consumers} to re-check without the old keys: those of the users deactivated."""
    off = [u for u, p in plan["users"].items() if p.get("phase") == "old_deactivated"]
    return by_host([e for e in plan["entries"] if e["iam_user"] in off])


def by_host(entries):
    out = {}
    for e in entries:
        out.setdefault(e["host"], []).append(e)
    return out


def host_check_failures(expected, results):
    """Every failed check of the hosts that ran consumer_rollout (prechecked or checked) in a play of
    their own. expected: {host: consumers it had to check}; results: {host: its registered result,
    or None}. A host with no result, or a result without checks (unreachable, an error), fails every
    check it had to run."""
    out = []
    for host, consumers in expected.items():
        result = results.get(host)
        if result is None or result.get("skipped"):
            out.extend(_host_rollout.unchecked_failures(host, consumers, "did not run its checks"))
        elif "health_failures" in result:
            out.extend(result["health_failures"])
        elif result.get("unreachable"):
            out.extend(_host_rollout.unreachable_failures(host, consumers, result.get("msg", "")))
        else:
            out.extend(_host_rollout.unchecked_failures(host, consumers, result.get("msg") or "failed"))
    return out


def prechecked(plan, results):
    """Before any write: every consumer of every host of the rollout is healthy on the key in use
    now, or the run is refused (ProgressError) naming each failed check."""
    expected = by_host([e for e in plan["entries"] if e["host"] in plan["targets"]])
    refusal = _host_rollout.precheck_refusal(host_check_failures(expected, results))
    if refusal:
        raise ProgressError(refusal)
    return plan, {}


def rechecked(plan, health_failures, retire):
    """After re-checking every consumer without the old keys: a user with a failed check gets its old
    key back; the others are checked (from here a failure leaves their old key Inactive) and, with
    retire=delete, their old key is deleted."""
    users, retiring, in_use = plan["users"], plan["retiring"], plan["in_use"]
    done = _outcome.done_users(retiring, in_use, health_failures)
    users = _outcome.merge(users, _outcome.checked(done))
    failing = []
    for f in health_failures:
        if f["iam_user"] not in failing:
            failing.append(f["iam_user"])
    return dict(plan, users=users, health_failures=health_failures), {
        "reactivate": _records(users, failing), "back": _records(users, _due(users, failing), "distributed"),
        "delete": _records(users, done) if retire == "delete" else [],
        "retired": _records(users, _due(users, done), "old_retired") if retire == "delete" else [],
        "finished": _due(users, done)}


def retired(plan):
    users = _outcome.merge(plan["users"], _outcome.retired(plan["users"], plan["retiring"], plan["in_use"],
                                                           plan["health_failures"]))
    return dict(plan, users=users), {}


def retire_failing(plan):
    """Retiring failed unexpectedly: the old keys to reactivate (none checked without them)."""
    unfinished = _outcome.unfinished(plan["users"], plan.get("retiring", []), plan.get("in_use", {}))
    return plan, {"reactivate": _records(plan["users"], unfinished)}


def retire_failed(plan, failed_task, failed_result, reactivations):
    """After reactivating what could be: each user's result and message, and the state written for
    those whose old key is back in service. reactivations: user, succeeded, changed, msg."""
    users = plan["users"]
    failed_at = _outcome.retire_failed_at(failed_task, failed_result)
    users = _outcome.merge(users, _outcome.retire_failure(users, plan.get("retiring", []), reactivations, failed_at))
    back = [r["user"] for r in reactivations if r["succeeded"]]
    return dict(plan, users=users), {"records": _records(users, _due(users, back), "distributed")}


def put_back(plan, restored_hosts, held_in_aws=()):
    """After putting back the hosts this run updated: their outcome, and the new keys no host may hold
    (deleted next). restored_hosts: {host: problems} of each host put back; held_in_aws: users whose
    parameter or secret could not be put back (any app may read their new key from it: kept)."""
    outcomes = plan["outcomes"]
    update = {}
    for h in _outcome.rollback_hosts(outcomes):
        problems = restored_hosts.get(h, ["%s: not put back" % h])
        status = ("rollback_failed" if problems else
                  "rolled_back" if outcomes[h]["phase"] in ("writing", "checked") else "failed")
        update[h] = {"status": status, "rollback": problems}
    outcomes = _outcome.merge(outcomes, update)
    keep_new = _plan.keep_new_users(plan["users"]) + list(held_in_aws)
    discard = _outcome.discardable_new_keys(plan["users"], plan["entries"], outcomes, keep_new)
    return dict(plan, outcomes=outcomes), {"discard": _records(plan["users"], discard)}


def rolled_back(plan, gone):
    """The end state of each rotation after a failed rollout; gone: users whose new key was deleted.
    The rotations rolled back have their state recorded as such."""
    users = plan["users"]
    keep_new = _plan.keep_new_users(users)
    update = _outcome.rolled_back(users, gone, _outcome.doubtful_hosts(plan["outcomes"]))
    for u, fields in _outcome.kept_new_keys(users, keep_new).items():
        update[u] = dict(update.get(u, {}), **fields)
    users = _outcome.merge(users, update)
    done = [u for u, p in users.items() if p["action"] == "rotate" and p.get("result") == "rolled_back"]
    return dict(plan, users=users), {"records": _records(users, done, "rolled_back")}


def _loop_results(registered):
    return [r for r in (registered or {}).get("results", []) if not r.get("skipped")]


def from_created(results):
    """What a loop of access_key state=present over the plan's creates returned, per user (the
    caller passes no secret: the loop's results without secret_access_key)."""
    return [{"user_name": r["item"]["user_name"], "failed": r.get("failed", False), "created": r.get("created", False),
             "msg": r.get("msg", ""), "access_key_id": (r.get("access_key") or {}).get("access_key_id")}
            for r in results if not r.get("skipped")]


def from_stored(results):
    """What a loop of key_store over the created keys returned, per user."""
    return [{"user_name": r["item"]["user_name"], "failed": r.get("failed", False), "msg": r.get("msg", "")}
            for r in results if not r.get("skipped")]


def from_reactivations(registered):
    """What a loop of access_key state=active over records returned, per user."""
    return [{"user": r["item"]["user_name"], "succeeded": not r.get("failed", False), "changed": r.get("changed", False),
             "msg": r.get("msg", "")} for r in _loop_results(registered)]


def from_put_back(registered):
    """{host: problems} from a loop of consumer_rollout state=restored over hosts."""
    return dict((r["item"], r["problems"] if "problems" in r else ["%s: %s" % (r["item"], r.get("msg", "rollback failed"))])
                for r in _loop_results(registered))


def from_deleted(registered):
    """The users whose key a loop of access_key state=absent over records deleted."""
    return [r["item"]["user_name"] for r in _loop_results(registered) if not r.get("failed", False)]
