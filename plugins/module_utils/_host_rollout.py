# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

# Internal to rekey.aws: not a public API, may change without notice.
"""Pure logic of one host's rollout, decided on the controller by rekey.aws.consumer_rollout:
which services to apply (each once), which health checks to run, the outcome of the host and
the messages naming host, consumer, file and cause. Plain dicts in and out; never a secret."""

from ansible_collections.rekey.aws.plugins.module_utils._coerce import flag, truncate, whole
from ansible_collections.rekey.aws.plugins.module_utils._consumers import held_in_aws


def being_distributed(consumers):
    """The consumers (with their user's keys) that receive a new key: their user is rotating and its
    new key is verified and being distributed."""
    return [c for c in consumers if c.get("action") == "rotate" and c.get("phase") == "distributing"]


def applies(consumers):
    """Each (apply, service, apply_command) of these consumers once, in order; none for apply none."""
    out = []
    for c in consumers:
        a = {"apply": c["apply"], "service": c.get("service") or "", "apply_command": c.get("apply_command") or ""}
        if c["apply"] != "none" and a not in out:
            out.append(a)
    return out


def apply_target(a):
    return a["service"] if a["apply"] in ("restart", "reload") else a["apply_command"]


def apply_problem(host, a, result):
    """Why applying failed on a host, or None: the service or command and its error output."""
    if not (result.get("failed") or result.get("unreachable") or result.get("rc", 0) not in (0, None)):
        return None
    detail = " ".join(t for t in (str(result.get("msg") or "failed").strip(), str(result.get("stderr") or "").strip(),
                                  str(result.get("stdout") or "").strip()) if t)
    if result.get("unreachable"):
        detail = "unreachable: " + detail
    return "%s: %s: %s" % (host, apply_target(a), truncate(detail, 300))


def health_checks(consumers, key_field, only_key_checks=False, existing_files_only=False):
    """The checks of these consumers for rekey.aws.consumer_health; the key id an app must use is
    in each consumer's key_field (target_key_id, or old_key_id after a rollback; None: any key).
    only_key_checks: just the URL checks that prove which key the app uses. existing_files_only:
    a consumer whose file does not exist yet is not checked (before the rotation creates it); one
    held in AWS always is (its parameter or secret must hold the key in use)."""
    out = []
    for c in consumers:
        requires = {"requires": c["path"]} if existing_files_only and not held_in_aws(c) else {}
        expect = (c.get(key_field) or "") if key_field and flag(c.get("health_expect_key_id")) else ""
        timeout = max(whole(c.get("health_timeout_s")), 1)
        if c.get("health_url") and (expect or not only_key_checks):
            out.append(dict(requires, name=c["name"], url=c["health_url"], status=whole(c.get("health_status") or 200),
                            expect=expect, timeout_s=timeout))
        if c.get("health_command") and not only_key_checks:
            out.append(dict(requires, name=c["name"], command=c["health_command"], timeout_s=timeout))
    return out


def health_failures(host, consumers, results):
    """The failed checks, in the shape the report and finish read: host, consumer, iam_user,
    check, got and one output line naming them."""
    users = dict((c["name"], c.get("iam_user")) for c in consumers)
    return [{"host": host, "consumer": r["name"], "iam_user": users.get(r["name"]), "check": r["check"],
             "got": r["got"], "output": "%s %s" % (host, r["output"])}
            for r in results if not r["healthy"]]


def precheck_refusal(failures):
    """The refusal when a consumer is not healthy on the key it uses now, before any write: its
    check could not prove the new key either."""
    if not failures:
        return None
    return ("Nothing was changed. These health checks fail on the key in use now, so they cannot prove a new key: "
            "%s. Fix the check (health_url, health_command) or the app, then run again."
            % "; ".join(f["output"] for f in failures))


def unreachable_failures(host, consumers, msg):
    """Every check of a host that could not be reached counts as failed."""
    return unchecked_failures(host, consumers, "host unreachable: " + truncate(str(msg).strip(), 200), "reach the host")


def unchecked_failures(host, consumers, got, check="run the checks"):
    """Every check of these consumers counts as failed, for the reason got."""
    got = truncate(str(got).strip(), 240)
    return [{"host": host, "consumer": c["name"], "iam_user": c.get("iam_user"), "check": check,
             "got": got, "output": "%s %s: %s" % (host, c["name"], got)} for c in consumers]


def file_problems(host, result):
    """consumer_files' problems, each prefixed with the host; an unreachable host is one problem."""
    if result.get("unreachable"):
        return ["%s: unreachable: %s" % (host, truncate(str(result.get("msg", "")).strip(), 300))]
    problems = result.get("problems")
    if problems is None and result.get("failed"):
        problems = [str(result.get("msg") or "consumer_files failed")]
    return ["%s %s" % (host, p) for p in problems or []]


def changed_names(result):
    return [f["name"] for f in result.get("files", []) if f["changed"]]


def started(consumers, now):
    return {"status": "started", "phase": "started", "consumers": [c["name"] for c in consumers], "existed": {},
            "failure": {}, "started_epoch": now}


def files_and_aws(consumers):
    """(consumers with a file on the host, consumers held in AWS: written from the controller)."""
    return [c for c in consumers if not held_in_aws(c)], [c for c in consumers if held_in_aws(c)]


def written(outcome, result, in_aws=()):
    """The outcome once consumer_files ran: writing, with the files that existed before (a file it
    never reached is not in existed, so it is never restored). The consumers held in AWS are in
    existed too (as existing): their apps run on the new key from now, so a rollback applies them."""
    existed = dict((f["name"], f["existed"]) for f in result.get("files", []))
    existed.update((c["name"], True) for c in in_aws)
    return dict(outcome, phase="writing", existed=existed)


def applying(outcome, consumers, settled):
    """The consumers to apply (all but those whose app already runs on the new key), and the
    outcome naming them in applied."""
    to_apply = [c for c in consumers if c["name"] not in settled]
    return dict(outcome, applied=[c["name"] for c in to_apply if c["apply"] != "none"]), to_apply


def failed(outcome, step, problems):
    return dict(outcome, status="failed", failure={"task": step, "msg": "; ".join(problems)})


def updated(outcome, now):
    return dict(outcome, status="updated", phase="checked", finished_epoch=now)


def rolled_back(outcome, problems, now):
    """A failed host after putting it back: rolled_back when files were being written, failed
    when nothing was written yet, rollback_failed when it could not be put back healthy."""
    if problems:
        status = "rollback_failed"
    else:
        status = "rolled_back" if outcome["phase"] == "writing" else "failed"
    return dict(outcome, status=status, rollback=problems, finished_epoch=now)


def restorable(consumers, existed):
    """The consumers whose file this run may have written (their existed is known), with it."""
    return [dict(c, existed=existed[c["name"]]) for c in consumers if c["name"] in existed]


def adopt_run_id(plan_user):
    """The run whose backups a consumer of this user takes over: a resumed rotation whose killed
    run was distributing may have written this host, so only its backup holds the file from
    before the rotation. None otherwise."""
    resume = (plan_user or {}).get("resume") or {}
    if resume.get("mode") == "continue" and resume.get("phase") == "distributing":
        return resume.get("run_id")
    return None


def reverting(consumers, users):
    """The consumers of rotations to revert (users: the plan's users), each with the killed run
    whose backups are put back (revert_run_id) and the key id the store lost (lost_key_id)."""
    out = []
    for c in consumers:
        resume = (users.get(c["iam_user"]) or {}).get("resume") or {}
        if resume.get("mode") == "revert":
            out.append(dict(c, revert_run_id=resume["run_id"], lost_key_id=resume["discard_key_id"]))
    return out


def lost_key_problems(host, consumers, result):
    """A problem for each file that still names the lost key after it was reverted: that key must
    not be deleted while a host may use it."""
    paths = dict((c["name"], c["path"]) for c in consumers)
    lost = dict((c["name"], c["lost_key_id"]) for c in consumers)
    return ["%s %s %s: still holds key %s, which the secret store lost, and no backup of run %s puts it back"
            % (host, f["name"], paths.get(f["name"]), lost.get(f["name"]),
               next((c["revert_run_id"] for c in consumers if c["name"] == f["name"]), "?"))
            for f in result.get("files", []) if f.get("holds_lost_key")]


def with_adoption(consumers, users):
    """The consumers, each with the adopt_run_id of its user (users: the plan's users)."""
    return [dict(c, adopt_run_id=adopt_run_id(users.get(c["iam_user"]))) for c in consumers]


def with_cleanup(consumers, users):
    """The consumers, each with earlier set when its user's rotation was resumed: the backups the
    killed run left go too (users: the plan's users; this run holds their lock)."""
    resumed = [u for u, p in users.items() if ((p or {}).get("resume") or {}).get("mode") in ("continue", "finish", "done")]
    return [dict(c, earlier=c["iam_user"] in resumed) for c in consumers]
