"""bench/analysis.py: the bench's ratios, slopes, goal verdicts, exit status and tables."""
import pytest

from bench import analysis


def rotation(wall=40.0, distribute=20.0, prepare=8.0, verify=2.0, iam=None, users=1, ok=True, **extra):
    return dict({"ok": ok, "wall_s": wall, "users": users, "verify_s": verify, "idle_window_s": 0, "settle_s": 1,
                 "phases_s": {"prepare": prepare, "distribute": distribute, "finish": 5.0},
                 "iam_calls": iam if iam is not None else {"iam:ListAccessKeys": 2, "iam:CreateAccessKey": 1}},
                **extra)


def pair(hosts, forks=5, push=20.0, push_ok=True, **rot):
    return {"hosts": hosts, "forks": forks, "rotation": rotation(**rot), "push": {"ok": push_ok, "wall_s": push}}


def by_goal(verdicts, start):
    (found,) = [v for v in verdicts if v["goal"].startswith(start)]
    return found


@pytest.mark.parametrize("num, den, expected", [
    (30, 20, 1.5), (10, 3, 3.33), (None, 2, None), (2, None, None), (2, 0, None)])
def test_ratio(num, den, expected):
    assert analysis.ratio(num, den) == expected


@pytest.mark.parametrize("points, expected", [
    ([(1, 10), (10, 55)], 5.0),                    # two sizes: the line through them
    ([(1, 10), (10, 50), (50, 250)], 4.93),        # least squares, not the end points
    ([(1, 10), (10, None), (50, 255)], 5.0),       # a failed run is left out
    ([(10, 50)], None), ([(10, 50), (10, 60)], None), ([], None)])
def test_slope(points, expected):
    assert analysis.slope(points) == expected


def test_inherent_waits_add_propagation_idle_and_settle():
    assert analysis.inherent_waits(rotation(verify=2.04)) == {
        "propagation": 2.04, "idle_window": 0, "settle": 1, "total": 3.0}


def test_derived_figures():
    d = analysis.derived(pair(10, wall=60.0, distribute=26.0, push=20.0, verify=4.0))
    assert (d["ratio"], d["distribute_over_push"], d["rotation_over_push_and_waits"]) == (3.0, 1.3, 2.4)
    assert d["iam_per_user"] == 3


def test_derived_leaves_out_failed_runs():
    d = analysis.derived(pair(10, ok=False, push_ok=False))
    assert d["rotation_s"] is None and d["push_s"] is None and d["ratio"] is None and d["iam_per_user"] is None


def test_slopes_per_forks():
    pairs = [pair(1, 5, push=5, wall=20, distribute=5), pair(11, 5, push=25, wall=70, distribute=45),
             pair(1, 25, push=5, wall=20, distribute=5), pair(11, 25, push=15, wall=40, distribute=15)]
    assert analysis.slopes(pairs) == {5: {"rotation": 5.0, "distribute": 4.0, "push": 2.0},
                                      25: {"rotation": 2.0, "distribute": 1.0, "push": 1.0}}


def test_iam_budget_gates_the_exit_status():
    over = [pair(1, iam={"iam:ListUserTags": 13})]
    verdict = by_goal(analysis.goal_verdicts(over), "IAM calls per rotated user")
    assert verdict["holds"] is False and verdict["gates_exit"] and "13 per user" in verdict["detail"]
    assert analysis.exit_status(over, analysis.goal_verdicts(over)) == 1
    at_budget = [pair(1, iam={"iam:ListUserTags": 12})]
    assert analysis.exit_status(at_budget, analysis.goal_verdicts(at_budget)) == 0


def test_iam_budget_is_per_user_in_the_many_users_run():
    many = {"users": 20, "delay_s": 8, "one": rotation(wall=30), "one_fleet": rotation(wall=40),
            "many": rotation(wall=50, users=20, iam={"iam:TagUser": 20 * 12})}
    verdicts = analysis.goal_verdicts([pair(1)], many)
    assert by_goal(verdicts, "IAM calls per rotated user")["holds"] is True
    many["many"]["iam_calls"] = {"iam:TagUser": 20 * 12 + 1}
    verdicts = analysis.goal_verdicts([pair(1)], many)
    assert by_goal(verdicts, "IAM calls per rotated user")["holds"] is False
    assert analysis.exit_status([pair(1)], verdicts, many) == 1


def test_iam_growth_with_the_fleet_gates_the_exit_status():
    pairs = [pair(1), pair(10, iam={"iam:ListAccessKeys": 3, "iam:CreateAccessKey": 1})]
    verdict = by_goal(analysis.goal_verdicts(pairs), "IAM calls constant")
    assert verdict["holds"] is False
    assert "iam:ListAccessKeys: 2 per user with 1 host(s), 3 with 10 (forks 5)" in verdict["detail"]
    assert analysis.exit_status(pairs, analysis.goal_verdicts(pairs)) == 1


def test_iam_constant_with_the_fleet_holds():
    pairs = [pair(1), pair(1, 25), pair(10), pair(10, 25)]
    verdict = by_goal(analysis.goal_verdicts(pairs), "IAM calls constant")
    assert verdict["holds"] is True and verdict["detail"] == "the same on [1, 10] hosts"
    assert analysis.exit_status(pairs, analysis.goal_verdicts(pairs)) == 0


def test_fewer_calls_on_a_larger_fleet_is_no_growth():
    pairs = [pair(1, iam={"iam:ListAccessKeys": 3}), pair(10, iam={"iam:ListAccessKeys": 2})]
    assert analysis.iam_growth(pairs) == []


def test_one_size_cannot_tell_growth():
    assert by_goal(analysis.goal_verdicts([pair(1), pair(1, 25)]), "IAM calls constant")["holds"] is None


def test_timing_goals_are_verdicts_that_do_not_gate_the_exit_status():
    pairs = [pair(1, wall=40, distribute=6, push=5), pair(10, wall=100, distribute=40, push=30)]
    verdicts = analysis.goal_verdicts(pairs)
    distribute = by_goal(verdicts, "distribute / bare push")
    assert distribute["holds"] is False and distribute["detail"] == "1.33 (10 h, forks 5)"  # 1 host is not judged
    whole = by_goal(verdicts, "rotation <= 1.5")
    assert whole["holds"] is False and not whole["gates_exit"]
    assert analysis.exit_status(pairs, verdicts) == 0


def test_timing_goals_hold():
    pairs = [pair(10, wall=40, distribute=26, push=26, verify=2)]  # 40 <= 1.5 x (26 + 3)
    verdicts = analysis.goal_verdicts(pairs)
    assert by_goal(verdicts, "distribute / bare push")["holds"] is True
    assert by_goal(verdicts, "rotation <= 1.5")["holds"] is True


def test_a_failed_run_exits_2():
    pairs = [pair(1), pair(10, push_ok=False)]
    assert analysis.exit_status(pairs, analysis.goal_verdicts(pairs)) == 2
    many = {"users": 20, "delay_s": 8, "one": rotation(), "many": {"ok": False}, "one_fleet": rotation()}
    assert analysis.exit_status([pair(1)], analysis.goal_verdicts([pair(1)], many), many) == 2
    many = {"users": 20, "delay_s": 8, "one": rotation(), "many": rotation(users=20), "one_fleet": {"ok": False}}
    assert analysis.exit_status([pair(1)], analysis.goal_verdicts([pair(1)], many), many) == 2


@pytest.mark.parametrize("one_prepare, many_prepare, many_wall, holds, how", [
    (12.0, 14.0, 59.0, True, "once for all users"),
    (12.0, 14.0, 61.0, False, "once for all users"),   # distribution made it slow, not propagation
    (12.0, 140.0, 59.0, True, "once for all users"),   # 19 x 8 s > 128 s: the per-user creates, not waits
    (12.0, 170.0, 300.0, False, "per user"),
])
def test_many_users_against_one_user_on_the_same_hosts(one_prepare, many_prepare, many_wall, holds, how):
    # The one user on its one host is 10 s: the verdict does not use it, the detail shows it.
    many = {"users": 20, "delay_s": 8.0, "one": rotation(wall=10.0, prepare=1.0),
            "one_fleet": rotation(wall=30.0, prepare=one_prepare),
            "many": rotation(wall=many_wall, prepare=many_prepare, users=20)}
    verdict = analysis.many_users_verdict(many)
    assert verdict["holds"] is holds and not verdict["gates_exit"]
    assert f"propagation waited {how}" in verdict["detail"]
    assert f"vs 30 s for 1 user on the same 20 hosts = {round(many_wall / 30, 2):g}" in verdict["detail"]
    assert f"vs 10 s for 1 user on its 1 host: {round(many_wall / 10, 2):g}" in verdict["detail"]
    assert verdict["goal"] == "20 users with propagation delay: total <= 2 x one user's time"


def test_many_users_not_measured():
    assert analysis.many_users_verdict(None)["holds"] is None
    assert analysis.many_users_verdict({"users": 20, "one": {"ok": False}, "many": {"ok": True}})["holds"] is None
    assert analysis.many_users_verdict({"users": 20, "one": rotation(), "many": rotation(users=20)})["holds"] is None


def test_prober_goal_only_at_200_hosts():
    assert by_goal(analysis.goal_verdicts([pair(50, auth_failures=0)]), "200 hosts")["holds"] is None
    assert by_goal(analysis.goal_verdicts([pair(200, 25, auth_failures=0)]), "200 hosts")["holds"] is True
    assert by_goal(analysis.goal_verdicts([pair(200, 25, auth_failures=3)]), "200 hosts")["holds"] is False


def test_tables():
    pairs = [pair(10, 25, wall=60.0, distribute=26.0, push=20.0), pair(1, 5, wall=30.0, distribute=5.0, push=5.0)]
    lines = analysis.table_lines(pairs)
    assert lines[0].split()[:4] == ["hosts", "forks", "rotation", "s"]
    assert lines[1].split()[:5] == ["1", "5", "30", "5", "6"]     # sorted by hosts
    assert lines[2].split()[:5] == ["10", "25", "60", "20", "3"]
    md = analysis.markdown_table(pairs)
    assert md[0].startswith("| hosts | forks | rotation s |") and md[1].startswith("|---:|")
    assert md[3].startswith("| 10 | 25 | 60 | 20 | 3 | 2 | 0 | 1 | 26 | 1.3 |")
    assert analysis.slope_lines(pairs)[1].split() == ["5", "-", "-", "-"]


def test_verdict_lines():
    lines = analysis.verdict_lines([{"goal": "g", "holds": False, "detail": "d", "gates_exit": True},
                                    {"goal": "h", "holds": None, "detail": "n", "gates_exit": False}])
    assert lines == ["FAILS  g: d  [gates the exit status]", "n/a    h: n"]


@pytest.mark.parametrize("hosts, repeats, expected", [(1, 3, 3), (9, 3, 3), (10, 3, 1), (200, 3, 1), (1, 1, 1)])
def test_only_small_labs_repeat_their_pairs(hosts, repeats, expected):
    assert analysis.repeats_for(hosts, repeats) == expected


@pytest.mark.parametrize("walls, expected", [([12.4, 10.3, 10.7], 10.7), ([9.0], 9.0), ([11.0, 10.0], 10.0),
                                             ([5.0, 4.0, 6.0, 7.0], 5.0)])
def test_the_median_run_counts(walls, expected):
    runs = [{"ok": True, "wall_s": w} for w in walls]
    assert analysis.median_run(runs)["wall_s"] == expected


def test_a_failed_repeat_is_the_run_that_counts():
    runs = [{"ok": True, "wall_s": 10.0}, {"ok": False, "wall_s": 3.0, "message": "failed"}]
    assert analysis.median_run(runs)["message"] == "failed"
