# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

# Internal to rekey.aws: not a public API, may change without notice.
"""Pure logic of the run's report: the JSON model (per user the keys, the result, the phase
reached, the hosts and what failed), the human summary lines and the set_stats data. No secret is
known here: key ids, hosts, checks and times only. `now` is passed in. No AWS call, no boto3."""

from ansible_collections.rekey.aws.plugins.module_utils._keys import iso, utc

OK_RESULTS = ("not_due", "rotated", "retired", "planned")
UNFINISHED = "the host did not finish (unreachable or interrupted)"


def result(p, check_mode):
    """What came of a user: refused, not_due, planned (check mode), the result finish recorded,
    skipped (a retirement that never started) or failed."""
    if p.get("result") == "refused":
        return "refused"
    if p["action"] == "none":
        return "not_due"
    if check_mode:
        return "planned"
    if "result" in p:
        return p["result"]
    return "skipped" if p["action"] == "retire" else "failed"


def old_key_final(p, result_, retire):
    if result_ in ("rotated", "retired"):
        return "deleted" if retire == "delete" else "Inactive"
    if p["phase"] == "old_deactivated":
        # Checked: every host passed without it, so it stays off. Otherwise reactivating it failed.
        return "Inactive"
    return "Active" if p["old_key_id"] else None


def new_key_final(p):
    if p["action"] == "retire":
        return "Active"
    if p["new_key_id"] and p["phase"] != "rolled_back":
        return "Active"
    if p["new_key_id"] or "deleted_key_id" in p:
        return "deleted"
    return None


def _failed_hosts(p, outcomes, statuses):
    out = []
    if p["action"] != "rotate":
        return out
    for h in p.get("hosts", []):
        o = outcomes.get(h)
        if o is None or not (statuses[h] in ("failed", "rollback_failed", "started") or o.get("failure")):
            continue
        out.append({"host": h, "status": statuses[h], "error": (o.get("failure") or {}).get("msg", UNFINISHED),
                    "rollback_problems": o.get("rollback", [])})
    return out


def user_entry(p, outcomes, check_mode, retire):
    hosts = p.get("hosts", [])
    statuses = dict((h, (outcomes.get(h) or {}).get("status", "not_reached")) for h in hosts)
    rotate = p["action"] == "rotate"
    result_ = result(p, check_mode)
    return {
        "user_name": p["user_name"], "action": p["action"], "reason": p["reason"], "result": result_,
        "ok": result_ in OK_RESULTS, "phase_reached": p["phase"], "old_key_id": p["old_key_id"],
        "new_key_id": p["new_key_id"] if rotate else None,
        "kept_key_id": p["target_key_id"] if p["action"] == "retire" else None,
        "pruned_key_ids": p.get("prune_key_ids", []) if rotate and p["new_key_id"] else [],
        "old_key_final_state": old_key_final(p, result_, retire), "new_key_final_state": new_key_final(p),
        "hosts": hosts,
        "hosts_updated": [h for h in hosts if statuses[h] == "updated"] if rotate else [],
        "hosts_rolled_back": [h for h in hosts if statuses[h] == "rolled_back"],
        "hosts_failed": _failed_hosts(p, outcomes, statuses),
        "hosts_not_reached": [h for h in hosts if statuses[h] == "not_reached"] if rotate else [],
        "check_failures": p.get("failures", []),
        "verify_seconds": p.get("verify_seconds"),
        "message": p.get("message", ""),
    }


def _unique(items):
    out = []
    for i in items:
        if i not in out:
            out.append(i)
    return out


def report(users, outcomes, prepare_failure, run, check_mode, retire, now):
    """The report of a run. users: the plan's users; outcomes: {host: outcome} of the rollout;
    prepare_failure: {task, msg, refused} or {}; run: run_id, started_at, started_epoch and, once
    reached, prepared_epoch and distributed_epoch; retire: rotate_retire; now: the end of the run."""
    end = utc(now).timestamp()
    t0 = float(run["started_epoch"])
    t1 = float(run.get("prepared_epoch", end))
    t2 = float(run.get("distributed_epoch", t1))
    problems = []
    if prepare_failure:
        problems.append('%s%s": %s' % ('refused before any change at "' if prepare_failure.get("refused")
                                       else 'prepare failed at "', prepare_failure["task"], prepare_failure["msg"]))
    if prepare_failure.get("refused"):
        # Refused before any change: no user got anything done.
        users = dict((u, dict(p, result="refused")) for u, p in users.items())
    entries = []
    for p in users.values():
        entry = user_entry(p, outcomes, check_mode, retire)
        if entry["message"]:
            problems.append(entry["message"])
        for f in entry["hosts_failed"]:
            problems.append(f["error"] + (" (rollback: %s)" % "; ".join(f["rollback_problems"])
                                          if f["rollback_problems"] else ""))
        entries.append(entry)
    ok = not prepare_failure and all(e["ok"] for e in entries)
    return {"run_id": run["run_id"], "ok": ok, "check_mode": check_mode, "started_at": run["started_at"],
            "finished_at": iso(now),
            "durations_s": {"prepare": round(t1 - t0, 1), "distribute": round(t2 - t1, 1),
                            "finish": round(end - t2, 1), "total": round(end - t0, 1)},
            "message": "ok" if ok else "rotation failed: " + " | ".join(_unique(problems)),
            "users": entries, "hosts": outcomes}


def resumed_from(p):
    r = p.get("resume") or {"mode": "none"}
    if r["mode"] == "none":
        return None
    return {"run_id": r["run_id"], "phase": r["phase"], "mode": r["mode"], "message": r["message"]}


def complete(report_, users, lock_users, released, finish_failure):
    """The report with the rotations resumed (and from where), the lock, and an unexpected failure
    of finish."""
    out = dict(report_)
    out["users"] = [dict(u, resumed_from=resumed_from(users[u["user_name"]])) for u in report_["users"]]
    out["resumed"] = [p["resume"] for p in users.values() if (p.get("resume") or {"mode": "none"})["mode"] != "none"]
    out["lock"] = {"run_id": report_["run_id"], "users": list(lock_users), "released": released}
    if finish_failure:
        out["ok"] = False
        out["message"] = ("rotation failed: " if report_["ok"] else report_["message"] + " | ") + (
            'finish failed at "%s": %s' % (finish_failure["task"], finish_failure["msg"]))
    return out


def _user_line(u):
    if u["action"] == "rotate":
        what = " (%s -> %s; old key %s, new key %s)" % (
            u["old_key_id"], u["new_key_id"] or "no new key", u["old_key_final_state"], u["new_key_final_state"] or "none")
    elif u["action"] == "retire":
        what = " (retire %s, keep %s; old key %s)" % (u["old_key_id"], u["kept_key_id"], u["old_key_final_state"])
    else:
        what = " (%s)" % u["reason"]
    return "%s %s: %s%s, phase %s" % ("ok    " if u["ok"] else "FAILED", u["user_name"], u["result"], what,
                                      u["phase_reached"])


def summary_lines(report_, path):
    """The human summary: the run, one line per user and its hosts, what failed, where the report is,
    and the rotations resumed."""
    d = report_["durations_s"]
    lines = ["rekey.aws rotation %s%s: %s in %s s (prepare %s s, distribute %s s, finish %s s)"
             % (report_["run_id"], " (check mode: a dry run, nothing changed)" if report_["check_mode"] else "",
                "OK" if report_["ok"] else "FAILED", d["total"], d["prepare"], d["distribute"], d["finish"])]
    for u in report_["users"]:
        lines.append(_user_line(u))
        for label, hosts in (("updated", u["hosts_updated"]), ("rolled back", u["hosts_rolled_back"]),
                             ("not reached", u["hosts_not_reached"])):
            if hosts:
                lines.append("       %s: %s" % (label, ", ".join(hosts)))
        lines.extend("       failed: %s (%s): %s" % (f["host"], f["status"], f["error"]) for f in u["hosts_failed"])
        if u["message"]:
            lines.append("       %s" % u["message"])
    if not report_["ok"]:
        lines.append(report_["message"])
    lines.append("report: %s%s" % (path, " (not written in check mode)" if report_["check_mode"] else ""))
    # A message may span lines: the summary is printed line by line.
    return "\n".join(lines).strip().splitlines() + ["resumed: %s" % r["message"] for r in report_.get("resumed", [])]


def stats(report_, path):
    """The set_stats data (rekey_rotate) for AWX."""
    return {"run_id": report_["run_id"], "ok": report_["ok"], "report": path,
            "users": dict((u["user_name"], {"result": u["result"], "old_key_id": u["old_key_id"],
                                            "new_key_id": u["new_key_id"]}) for u in report_["users"])}
