"""The bench's arithmetic: ratios, per-host slopes, the issue's goals as verdicts, the tables.

Pure functions over the measurements bench_rotation.py records (no lab, no clock), so that the
verdicts and the exit status are unit-tested (tests/unit/test_bench_analysis.py).

A measurement ("pair") is one fleet size at one forks setting:
    {"hosts": 10, "forks": 5,
     "rotation": {"ok": True, "wall_s": 80.1, "phases_s": {"prepare": .., "distribute": .., "finish": ..},
                  "iam_calls": {"iam:ListAccessKeys": 5, ...}, "users": 1, "verify_s": 3.1,
                  "idle_window_s": 0, "settle_s": 1, "peak_pss_mb": 310.0, "auth_failures": 0},
     "push": {"ok": True, "wall_s": 30.2, "peak_pss_mb": 250.0}}
"""
from __future__ import annotations

# The goals of issue 10 ("Fleet scale").
IAM_CALLS_PER_USER_MAX = 12
DISTRIBUTE_OVER_PUSH_MAX = 1.3
ROTATION_OVER_PUSH_AND_WAITS_MAX = 1.5
MANY_USERS_OVER_ONE_MAX = 2.0
# The distribute goal applies from this fleet size on (10, 50 and 200 hosts in the issue).
DISTRIBUTE_GOAL_FROM_HOSTS = 10
PROBER_GOAL_HOSTS = 200


# A run on a lab this small lasts seconds, where a loaded second is 10 %: its pairs are repeated.
REPEATED_BELOW_HOSTS = 10


def repeats_for(hosts, repeats):
    """How many alternating pairs (rotation, bare push) a lab of `hosts` runs per forks setting."""
    return repeats if hosts < REPEATED_BELOW_HOSTS else 1


def median_run(runs):
    """Of the repeated runs of one kind, the one of median wall time (the lower of the two middle
    ones when their number is even); the last run when one failed (it says why)."""
    if not all(r.get("ok") for r in runs):
        return runs[-1]
    ordered = sorted(runs, key=lambda r: r["wall_s"])
    return ordered[(len(ordered) - 1) // 2]


def ratio(numerator, denominator):
    """numerator / denominator rounded to 2 places; None when either is missing or the denominator is 0."""
    if numerator is None or denominator in (None, 0):
        return None
    return round(numerator / denominator, 2)


def slope(points):
    """Least-squares slope (seconds per host) of [(hosts, seconds), ...]; None below two distinct sizes."""
    points = [(float(x), float(y)) for x, y in points if y is not None]
    if len({x for x, y in points}) < 2:
        return None
    mean_x = sum(x for x, y in points) / len(points)
    mean_y = sum(y for x, y in points) / len(points)
    sxx = sum((x - mean_x) ** 2 for x, y in points)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in points)
    return round(sxy / sxx, 2)


def inherent_waits(rotation):
    """What a rotation must wait for whatever its speed: the new key's propagation (the time its
    verification took), the idle window and the settle after deactivating the old key."""
    waits = {"propagation": rotation.get("verify_s"), "idle_window": rotation.get("idle_window_s"),
             "settle": rotation.get("settle_s")}
    waits["total"] = round(sum(v for v in waits.values() if v is not None), 1)
    return waits


def iam_total(rotation):
    return sum(rotation.get("iam_calls", {}).values())


def iam_per_user(rotation):
    users = rotation.get("users") or 0
    return round(iam_total(rotation) / users, 1) if users else None


def derived(pair):
    """The figures of one pair the table prints and the goals judge."""
    rot, push = pair.get("rotation", {}), pair.get("push", {})
    waits = inherent_waits(rot)
    push_s = push.get("wall_s") if push.get("ok") else None
    rot_s = rot.get("wall_s") if rot.get("ok") else None
    distribute = rot.get("phases_s", {}).get("distribute") if rot.get("ok") else None
    return {
        "rotation_s": rot_s, "push_s": push_s, "ratio": ratio(rot_s, push_s), "waits": waits,
        "distribute_s": distribute, "distribute_over_push": ratio(distribute, push_s),
        "rotation_over_push_and_waits": ratio(rot_s, None if push_s is None else push_s + waits["total"]),
        "iam_per_user": iam_per_user(rot) if rot.get("ok") else None,
    }


def slopes(pairs):
    """Per forks setting: seconds per host of the rotation, its distribute phase and the bare push."""
    out = {}
    for forks in sorted({p["forks"] for p in pairs}):
        mine = [p for p in pairs if p["forks"] == forks]
        figures = [(p["hosts"], derived(p)) for p in mine]
        out[forks] = {
            "rotation": slope([(h, d["rotation_s"]) for h, d in figures]),
            "distribute": slope([(h, d["distribute_s"]) for h, d in figures]),
            "push": slope([(h, d["push_s"]) for h, d in figures]),
        }
    return out


def iam_growth(pairs):
    """IAM actions called more often (per user) on a larger fleet than on the smallest one."""
    measured = sorted((p for p in pairs if p.get("rotation", {}).get("ok")), key=lambda p: (p["hosts"], p["forks"]))
    if not measured:
        return []
    base = measured[0]
    problems = []

    def per_user(pair, action):
        rot = pair["rotation"]
        return rot.get("iam_calls", {}).get(action, 0) / (rot.get("users") or 1)

    for pair in measured[1:]:
        if pair["hosts"] <= base["hosts"]:
            continue
        actions = sorted(set(base["rotation"].get("iam_calls", {})) | set(pair["rotation"].get("iam_calls", {})))
        for action in actions:
            small, large = per_user(base, action), per_user(pair, action)
            if large > small:
                problems.append(f"{action}: {small:g} per user with {base['hosts']} host(s), "
                                f"{large:g} with {pair['hosts']} (forks {pair['forks']})")
    return problems


def _verdict(goal, holds, detail, gates_exit=False):
    return {"goal": goal, "holds": holds, "detail": detail, "gates_exit": gates_exit}


def goal_verdicts(pairs, many_users=None):
    """Each goal of the issue: holds True/False, or None when this run did not measure it.
    Only the IAM goals gate the exit status (gates_exit)."""
    verdicts = []
    rotated = [p for p in pairs if p.get("rotation", {}).get("ok")]
    if many_users and many_users.get("many", {}).get("ok"):
        rotated_runs = [p["rotation"] for p in rotated] + [many_users["many"]]
    else:
        rotated_runs = [p["rotation"] for p in rotated]

    worst = max((iam_per_user(r) for r in rotated_runs if r.get("users")), default=None)
    verdicts.append(_verdict(
        f"IAM calls per rotated user <= {IAM_CALLS_PER_USER_MAX}",
        None if worst is None else worst <= IAM_CALLS_PER_USER_MAX,
        "not measured" if worst is None else f"at most {worst:g} per user", gates_exit=True))

    growth = iam_growth(pairs)
    sizes = sorted({p["hosts"] for p in rotated})
    verdicts.append(_verdict(
        "IAM calls constant in the fleet size",
        None if len(sizes) < 2 else not growth,
        f"one size only ({sizes})" if len(sizes) < 2 else ("; ".join(growth) or f"the same on {sizes} hosts"),
        gates_exit=True))

    big = [(p, derived(p)) for p in pairs if p["hosts"] >= DISTRIBUTE_GOAL_FROM_HOSTS]
    judged = [(p, d) for p, d in big if d["distribute_over_push"] is not None]
    verdicts.append(_verdict(
        f"distribute / bare push <= {DISTRIBUTE_OVER_PUSH_MAX} at {DISTRIBUTE_GOAL_FROM_HOSTS}+ hosts",
        None if not judged else all(d["distribute_over_push"] <= DISTRIBUTE_OVER_PUSH_MAX for size, d in judged),
        "not measured" if not judged else ", ".join(
            f"{d['distribute_over_push']:g} ({p['hosts']} h, forks {p['forks']})" for p, d in judged)))

    judged = [(p, derived(p)) for p in pairs]
    judged = [(p, d) for p, d in judged if d["rotation_over_push_and_waits"] is not None]
    verdicts.append(_verdict(
        f"rotation <= {ROTATION_OVER_PUSH_AND_WAITS_MAX} x (bare push + inherent waits)",
        None if not judged else all(d["rotation_over_push_and_waits"] <= ROTATION_OVER_PUSH_AND_WAITS_MAX
                                    for size, d in judged),
        "not measured" if not judged else ", ".join(
            f"{d['rotation_over_push_and_waits']:g} ({p['hosts']} h, forks {p['forks']})" for p, d in judged)))

    verdicts.append(many_users_verdict(many_users))

    biggest = [p for p in rotated if p["hosts"] >= PROBER_GOAL_HOSTS and "auth_failures" in p["rotation"]]
    verdicts.append(_verdict(
        f"{PROBER_GOAL_HOSTS} hosts rotated with 0 auth failures seen by the prober",
        None if not biggest else all(p["rotation"]["auth_failures"] == 0 for p in biggest),
        "not measured (make bench-200)" if not biggest else ", ".join(
            f"{p['rotation']['auth_failures']} (forks {p['forks']})" for p in biggest)))
    return verdicts


MANY_USERS_RUNS = ("one", "many", "one_fleet")


def many_users_verdict(many_users):
    """20 users on 20 hosts against one user on the same 20 hosts: both roll out every host in
    the same serial batches, so the ratio is what the other users cost. One user on its one host
    is shown too; against it the ratio also holds the rollout of 19 more hosts."""
    users = (many_users or {}).get("users", 20)
    goal = f"{users} users with propagation delay: total <= {MANY_USERS_OVER_ONE_MAX:g} x one user's time"
    if not many_users:
        return _verdict(goal, None, "not measured")
    if not all(many_users.get(run, {}).get("ok") for run in MANY_USERS_RUNS):
        return _verdict(goal, None, "a run failed")
    one, many, one_fleet = (many_users[run] for run in MANY_USERS_RUNS)
    r = ratio(many["wall_s"], one_fleet["wall_s"])
    return _verdict(goal, r <= MANY_USERS_OVER_ONE_MAX,
                    f"{many['wall_s']:g} s vs {one_fleet['wall_s']:g} s for 1 user on the same {users} hosts = {r:g} "
                    f"(vs {one['wall_s']:g} s for 1 user on its 1 host: {ratio(many['wall_s'], one['wall_s']):g}); "
                    f"{propagation_finding(many_users)}")


def propagation_finding(many_users):
    """Was propagation waited once for all users, or once per user? Both runs roll out the same
    hosts; waited per user, the prepare phase would grow by at least one delay per extra user;
    what it grows by otherwise is the per-user work of creating and recording the keys. The
    longest verification is shown too."""
    one, many, delay = many_users["one_fleet"], many_users["many"], many_users["delay_s"]
    extra = many["phases_s"]["prepare"] - one["phases_s"]["prepare"]
    at_once = extra < (many["users"] - 1) * delay
    return (f"propagation waited {'once for all users' if at_once else 'per user'} "
            f"(prepare {many['phases_s']['prepare']:g} s for {many['users']} users vs "
            f"{one['phases_s']['prepare']:g} s for 1: {extra:+g} s, per-user waits would add >= "
            f"{(many['users'] - 1) * delay:g} s; longest verification {many.get('verify_s')} s vs "
            f"{one.get('verify_s')} s, delay {delay:g} s)")


def exit_status(pairs, verdicts, many_users=None):
    """2: a run failed (nothing sound to compare); 1: an IAM goal does not hold; 0 otherwise."""
    runs = [p.get(k, {}) for p in pairs for k in ("rotation", "push")]
    if many_users:
        runs += [many_users.get(run, {}) for run in MANY_USERS_RUNS]
    if any(not r.get("ok") for r in runs):
        return 2
    if any(v["gates_exit"] and v["holds"] is False for v in verdicts):
        return 1
    return 0


def _cell(value, width, fmt="g"):
    return f"{'-' if value is None else format(value, fmt):>{width}}"


TABLE_HEADER = ("hosts", "forks", "rotation s", "push s", "ratio", "propag s", "idle s", "settle s",
                "distrib s", "dist/push", "rot/(push+waits)", "IAM/user", "mem MB rot", "mem MB push")


def table_lines(pairs):
    """The per-size table, one row per (hosts, forks)."""
    widths = [max(len(h), 5) for h in TABLE_HEADER]
    lines = [" ".join(f"{h:>{w}}" for h, w in zip(TABLE_HEADER, widths))]
    for p in sorted(pairs, key=lambda p: (p["hosts"], p["forks"])):
        d = derived(p)
        rot, push = p.get("rotation", {}), p.get("push", {})
        cells = [p["hosts"], p["forks"], d["rotation_s"], d["push_s"], d["ratio"], d["waits"]["propagation"],
                 d["waits"]["idle_window"], d["waits"]["settle"], d["distribute_s"], d["distribute_over_push"],
                 d["rotation_over_push_and_waits"], d["iam_per_user"], rot.get("peak_pss_mb"),
                 push.get("peak_pss_mb")]
        lines.append(" ".join(_cell(c, w) for c, w in zip(cells, widths)))
    return lines


def markdown_table(pairs):
    """The same table as Markdown, for bench/README.md."""
    lines = ["| " + " | ".join(TABLE_HEADER) + " |", "|" + "|".join("---:" for name in TABLE_HEADER) + "|"]
    for p in sorted(pairs, key=lambda p: (p["hosts"], p["forks"])):
        d = derived(p)
        cells = [p["hosts"], p["forks"], d["rotation_s"], d["push_s"], d["ratio"], d["waits"]["propagation"],
                 d["waits"]["idle_window"], d["waits"]["settle"], d["distribute_s"], d["distribute_over_push"],
                 d["rotation_over_push_and_waits"], d["iam_per_user"], p.get("rotation", {}).get("peak_pss_mb"),
                 p.get("push", {}).get("peak_pss_mb")]
        lines.append("| " + " | ".join("-" if c is None else format(c, "g") for c in cells) + " |")
    return lines


def slope_lines(pairs):
    lines = ["forks  rotation s/host  distribute s/host  bare push s/host"]
    for forks, s in slopes(pairs).items():
        lines.append(f"{forks:>5}  {_cell(s['rotation'], 15)}  {_cell(s['distribute'], 17)}  {_cell(s['push'], 16)}")
    return lines


def verdict_lines(verdicts):
    word = {True: "HOLDS", False: "FAILS", None: "n/a  "}
    return [f"{word[v['holds']]}  {v['goal']}: {v['detail']}" + ("  [gates the exit status]" if v["gates_exit"] else "")
            for v in verdicts]
