"""`make bench`: forced rotations against a bare push, on fleets of several sizes; time, memory and IAM calls.

For each fleet size (--hosts 1,10,50): one lab (tools/lab.py: the strict endpoint on a fleet bridge,
an IAM user with a first key, N hosts whose demo apps run on it); then for each forks setting
(--forks 5,25), alternating on that lab:
  rotation   playbooks/rotate.yml as tools/demo.py runs it (-e rotate_force=true, the lab's fast
             finish), the endpoint's counts reset before and read after, the prober watching
  bare push  bench/bare_push.yml with the same serial and forks: a key created out of band is
             written, the app restarted, /health awaited on the new key; then the key the hosts
             no longer hold is deleted out of band, so that the next rotation starts from one key.
On a lab of fewer than 10 hosts, where a run lasts seconds, each forks setting runs 3 such pairs
(--repeats), alternating, and the run of median wall time of each kind counts. Before the first
run on a lab, the SSH connections to its hosts are opened once (not measured), so that neither run
pays their setup. Each run records its wall time and the peak PSS of the ansible-playbook process
tree; a rotation also its phases and per-user verification times (the report), IAM calls by
action, and the auth failures the prober saw. Then (--many-users 20), with a
propagation delay (--delay 8) on the endpoint: on a lab of 20 hosts each holding its own user's key, one run rotating one user (its one
host), one run rotating all 20; and on a lab of 20 hosts that all hold one user's key, that user
rotated: the same rollout of 20 hosts for one user, the baseline the 20 users are judged against.

Prints the table, per-host slopes and the issue's goals as verdicts (bench/analysis.py); writes
demo-out/bench.json, the chart demo-out/bench.png (matplotlib, requirements/bench.txt) and each
run's output to demo-out/bench-logs/. Exit status:
    0  the IAM goals hold (<= 12 calls per user, not growing with the fleet)
    1  an IAM goal does not (the verdicts name it)
    2  a run failed or a lab did not come up
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# pylint: disable=wrong-import-position
from bench import analysis, many_users  # noqa: E402
from bench.proc_memory import TreeMemory  # noqa: E402
from tests.support.endpoint import Endpoint  # noqa: E402
from tools import lab  # noqa: E402
from tools.fleet import Fleet  # noqa: E402
from tools.prober import Prober  # noqa: E402

USER = "bench-app"
BARE_PUSH = REPO / "bench" / "bare_push.yml"
# About this many probes a second over the whole fleet: enough to see a refused key, little load.
PROBES_PER_S = 20


def number_list(text: str) -> list[int]:
    if text.strip() in ("", "none"):
        return []  # --hosts none: the many-users run alone
    try:
        values = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive numbers such as 1,10,50") from None
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive numbers such as 1,10,50")
    return values


def playbook_env() -> dict:
    """The caller's environment without AWS credentials or settings: every AWS call must go to
    the lab's endpoint with the lab's admin key (consumers.yml sets rotate_aws)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(ANSIBLE_COLLECTIONS_PATH=os.environ.get("ANSIBLE_COLLECTIONS_PATH", str(REPO / ".venv" / "collections")),
               ANSIBLE_RETRY_FILES_ENABLED="false", ANSIBLE_HOST_KEY_CHECKING="false",
               ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    return env


def run_playbook(args: list[str], log: Path) -> dict:
    """ansible-playbook ARGS; its exit code, wall time and the peak memory of its process tree."""
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), *args]
    load_before = os.getloadavg()[0]
    with open(log, "w", encoding="utf-8") as out:
        started = time.monotonic()
        proc = subprocess.Popen(cmd, env=playbook_env(), cwd=str(REPO), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        memory = TreeMemory(proc.pid).start()
        status, usage = os.wait4(proc.pid, 0)[1:]
        wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return dict(memory.stop(), rc=proc.returncode, wall_s=round(wall, 2),
                largest_process_mb=round(usage.ru_maxrss / 1024, 1), log=str(log),
                # The machine is shared: the 1-minute load average before and after the run.
                load_1m=[round(load_before, 1), round(os.getloadavg()[0], 1)])


def lab_settings(directory: Path) -> dict:
    return json.loads((directory / "consumers.yml").read_text())["all"]["vars"]


def rotate(directory: Path, log: Path, forks: int, extra: dict | None = None, probe: bool = True) -> dict:
    """One forced rotation on the lab in `directory`, with the endpoint's counts of it."""
    endpoint = Endpoint.from_state_file(directory / "endpoint.json")
    report_path = directory / "report.json"
    report_path.unlink(missing_ok=True)
    endpoint.reset_counts()
    fleet = Fleet.load(directory / "fleet")
    prober = None
    if probe:
        prober = Prober(fleet.app_urls, interval=max(0.5, len(fleet.hosts) / PROBES_PER_S),
                        timeline=log.with_suffix(".prober.jsonl")).start()
    extra_vars = dict({"rotate_force": True}, **(extra or {}))
    try:
        run = run_playbook([str(REPO / "playbooks" / "rotate.yml"), "-i", str(directory / "fleet" / "inventory.yml"),
                            "-i", str(directory / "consumers.yml"), "--vault-password-file",
                            str(directory / "vault-pass"), "-f", str(forks), "-e", json.dumps(extra_vars)], log)
    finally:
        totals = prober.stop() if prober else {}
    counts = endpoint.counts()
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    settings = lab_settings(directory)
    users = report.get("users", [])
    verify = [u.get("verify_seconds") for u in users if u.get("verify_seconds") is not None]
    result = dict(run, ok=run["rc"] == 0 and report.get("ok") is True,
                  message=report.get("message", f"no report; see {log}"),
                  phases_s=report.get("durations_s", {}),
                  users=sum(1 for u in users if u.get("action") == "rotate"),
                  verify_s=max(verify) if verify else None,
                  verify_per_user_s={u["user_name"]: u.get("verify_seconds") for u in users},
                  idle_window_s=settings.get("rotate_idle_window_s"),
                  settle_s=settings.get("rotate_deactivate_settle_s"),
                  iam_calls={a: n for a, n in counts.items() if a.startswith("iam:")},
                  sts_calls={a: n for a, n in counts.items() if a.startswith("sts:")})
    if totals:
        result["auth_failures"] = totals.get("overall", {}).get("auth_failures", 0)
    return result


def bare_push(directory: Path, log: Path, forks: int) -> dict:
    """The baseline on the lab in `directory`: a new key for USER (out of band), pushed; then the
    user's other keys deleted, as a rotation would leave it."""
    iam = Endpoint.from_state_file(directory / "endpoint.json").iam()
    before = [k["AccessKeyId"] for k in iam.list_access_keys(UserName=USER)["AccessKeyMetadata"]]
    key = iam.create_access_key(UserName=USER)["AccessKey"]
    extra = directory / "bare-push-vars.json"
    extra.touch(mode=0o600)
    extra.write_text(json.dumps({"bench_key_id": key["AccessKeyId"], "bench_secret": key["SecretAccessKey"]}))
    try:
        run = run_playbook([str(BARE_PUSH), "-i", str(directory / "fleet" / "inventory.yml"),
                            "-f", str(forks), "-e", f"@{extra}"], log)
    finally:
        extra.unlink()
    if run["rc"] == 0:
        for old in before:
            iam.update_access_key(UserName=USER, AccessKeyId=old, Status="Inactive")
            iam.delete_access_key(UserName=USER, AccessKeyId=old)
    return dict(run, ok=run["rc"] == 0, message="ok" if run["rc"] == 0 else f"bare push failed; see {log}")


def open_connections(directory: Path, log: Path) -> float:
    """Open the SSH connections to every host of the lab once, before anything is measured (not
    counted): the first run on a lab would pay their setup and the runs after it reuse them
    (ControlPersist), so the rotation and the push start from the same warm connections."""
    cmd = [str(Path(sys.executable).parent / "ansible"), "app", "-i", str(directory / "fleet" / "inventory.yml"),
           "-m", "ansible.builtin.ping", "-f", "25"]
    started = time.monotonic()
    with open(log, "w", encoding="utf-8") as out:
        subprocess.run(cmd, env=playbook_env(), cwd=str(REPO), stdout=out, stderr=subprocess.STDOUT,
                       stdin=subprocess.DEVNULL, check=True)
    return time.monotonic() - started


def measure_size(hosts: int, forks_list: list[int], logs: Path, repeats: int) -> list[dict]:
    """One lab of `hosts` hosts; per forks setting a rotation, then a bare push (on a small lab
    `repeats` such pairs, alternating, the median run of each kind counting)."""
    directory = Path(tempfile.mkdtemp(prefix=f"rekey-bench-{hosts}-"))
    pairs = []
    try:
        started = time.monotonic()
        lab.up(directory, hosts, USER)
        print(f"  lab of {hosts} host(s) up in {time.monotonic() - started:.0f} s", flush=True)
        warm = open_connections(directory, logs / f"hosts-{hosts}-connect.log")
        print(f"  SSH connections opened in {warm:.1f} s (not measured)", flush=True)
        for forks in forks_list:
            rotations, pushes = [], []
            for attempt in range(analysis.repeats_for(hosts, repeats)):
                name = f"hosts-{hosts}-forks-{forks}" + (f"-{attempt + 1}" if attempt else "")
                rotation = rotate(directory, logs / f"{name}-rotation.log", forks)
                print(f"  forks {forks}: rotation {rotation['wall_s']} s ({rotation['message'][:200]})", flush=True)
                push = bare_push(directory, logs / f"{name}-push.log", forks) if rotation["ok"] else \
                    {"ok": False, "message": "not run: the rotation failed"}
                print(f"  forks {forks}: bare push {push.get('wall_s', '-')} s ({push['message']})", flush=True)
                rotations.append(rotation)
                pushes.append(push)
                if not rotation["ok"] or not push["ok"]:
                    break
            pair = {"hosts": hosts, "forks": forks, "rotation": analysis.median_run(rotations),
                    "push": analysis.median_run(pushes)}
            if len(rotations) > 1:
                pair["repeats"] = {"rotation_s": [r.get("wall_s") for r in rotations],
                                   "push_s": [p.get("wall_s") for p in pushes]}
            pairs.append(pair)
            if not pair["rotation"]["ok"] or not pair["push"]["ok"]:
                break
    except Exception as exc:  # pylint: disable=broad-exception-caught  # recorded, and exit 2
        failed = {"ok": False, "message": f"{type(exc).__name__}: {exc}"}
        pairs.append({"hosts": hosts, "forks": forks_list[len(pairs) % len(forks_list)], "rotation": failed,
                      "push": failed})
    finally:
        lab.down(directory)
        shutil.rmtree(directory, ignore_errors=True)
    return pairs


def measure_many_users(users: int, delay: float, forks: int, logs: Path) -> dict:
    """Under a propagation delay: on a lab where host i holds user i's key, one user rotated (its
    one host), then all `users`; then, on a lab of as many hosts that all hold one user's key, that
    user rotated (the same rollout of every host, for one user)."""
    result: dict = {"users": users, "delay_s": delay, "forks": forks}
    directory = Path(tempfile.mkdtemp(prefix=f"rekey-bench-users-{users}-"))
    try:
        names = many_users.up(directory, users)
        Endpoint.from_state_file(directory / "endpoint.json").set_faults(propagation_delay_s=delay)
        result["one"] = rotate(directory, logs / f"users-1-of-{users}.log", forks,
                               extra={"rotate_users": names[:1]}, probe=False)
        print(f"  1 user on 1 host: {result['one']['wall_s']} s ({result['one']['message'][:200]})", flush=True)
        result["many"] = rotate(directory, logs / f"users-{users}.log", forks, probe=False)
        print(f"  {users} users on {users} hosts: {result['many']['wall_s']} s ({result['many']['message'][:200]})",
              flush=True)
    except Exception as exc:  # pylint: disable=broad-exception-caught  # recorded, and exit 2
        result.setdefault("one", {"ok": False})
        result["many"] = {"ok": False, "message": f"{type(exc).__name__}: {exc}"}
    finally:
        lab.down(directory)
        shutil.rmtree(directory, ignore_errors=True)
    directory = Path(tempfile.mkdtemp(prefix=f"rekey-bench-fleet-{users}-"))
    try:
        lab.up(directory, users, USER)
        Endpoint.from_state_file(directory / "endpoint.json").set_faults(propagation_delay_s=delay)
        result["one_fleet"] = rotate(directory, logs / f"users-1-on-{users}-hosts.log", forks, probe=False)
        print(f"  1 user on {users} hosts: {result['one_fleet']['wall_s']} s "
              f"({result['one_fleet']['message'][:200]})", flush=True)
    except Exception as exc:  # pylint: disable=broad-exception-caught  # recorded, and exit 2
        result["one_fleet"] = {"ok": False, "message": f"{type(exc).__name__}: {exc}"}
    finally:
        lab.down(directory)
        shutil.rmtree(directory, ignore_errors=True)
    return result


def print_many_users(many: dict) -> None:
    print(f"\n{many['users']} users held by {many['users']} hosts, propagation delay {many['delay_s']:g} s, "
          f"forks {many['forks']}:")
    labels = {"one": "1 user on 1 host", "many": f"{many['users']} users on {many['users']} hosts",
              "one_fleet": f"1 user on {many['users']} hosts"}
    for label, title in labels.items():
        run = many.get(label, {})
        if not run.get("ok"):
            print(f"  {title}: FAILED {run.get('message', 'not run')}")
            continue
        verify = [v for v in run["verify_per_user_s"].values() if v is not None]
        print(f"  {title}: wall {run['wall_s']:g} s, phases {run['phases_s']}, "
              f"verification per user {min(verify):g}-{max(verify):g} s, "
              f"IAM calls {analysis.iam_total(run)} ({analysis.iam_per_user(run):g} per user)")


def save(path: Path, pairs: list[dict], many: dict | None, verdicts: list | None = None, partial: bool = False) -> None:
    path.write_text(json.dumps({"partial": partial, "pairs": pairs, "many_users": many, "verdicts": verdicts,
                                "slopes": analysis.slopes(pairs), "machine": {"cpus": os.cpu_count()}},
                               indent=2) + "\n")


def merged_pairs(path: Path | None, pairs: list[dict]) -> list[dict]:
    """The pairs of an earlier run whose (hosts, forks) this run did not measure."""
    if path is None or not path.exists():
        return []
    measured = {(p["hosts"], p["forks"]) for p in pairs}
    return [p for p in json.loads(path.read_text()).get("pairs", []) if (p["hosts"], p["forks"]) not in measured]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=number_list, default=number_list("1,10,50"),
                        help="fleet sizes, comma-separated (default 1,10,50; none: only the many-users run)")
    parser.add_argument("--forks", type=number_list, default=number_list("5,25"),
                        help="ansible-playbook -f settings, comma-separated (default 5,25)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="alternating pairs per forks setting on labs of fewer than %d hosts, the median run "
                             "of each kind counting (default 3)" % analysis.REPEATED_BELOW_HOSTS)
    parser.add_argument("--many-users", type=int, default=20, help="users (and hosts) of the many-users run; 0: skip")
    parser.add_argument("--delay", type=float, default=8.0, help="propagation delay of the many-users run (s)")
    parser.add_argument("--out", type=Path, default=REPO / "demo-out" / "bench.json",
                        help="where to write the results (default demo-out/bench.json; the chart beside it)")
    parser.add_argument("--merge", type=Path,
                        help="an earlier run's results (bench.json): its pairs of other sizes or forks join the "
                             "table, the slopes and the chart (missing: ignored)")
    args = parser.parse_args()
    logs = args.out.parent / "bench-logs"
    logs.mkdir(parents=True, exist_ok=True)
    pairs = []
    for hosts in args.hosts:
        print(f"{hosts} host(s), forks {args.forks} ...", flush=True)
        pairs.extend(measure_size(hosts, args.forks, logs, args.repeats))
        save(args.out, pairs, None, partial=True)  # an interrupted bench keeps the sizes it measured
    earlier = merged_pairs(args.merge, pairs)
    if earlier:
        print(f"merged from {args.merge}: " + ", ".join(f"{p['hosts']} h forks {p['forks']}" for p in earlier))
    pairs = earlier + pairs
    many = None
    if args.many_users:
        print(f"{args.many_users} users on {args.many_users} hosts, propagation delay {args.delay:g} s ...", flush=True)
        many = measure_many_users(args.many_users, args.delay, 5, logs)
    verdicts = analysis.goal_verdicts(pairs, many)
    status = analysis.exit_status(pairs, verdicts, many)
    print("\n" + "\n".join(analysis.table_lines(pairs)))
    print("\nper-host slope (least squares over the sizes):\n" + "\n".join(analysis.slope_lines(pairs)))
    if many:
        print_many_users(many)
    print("\ngoals (issue 10):\n" + "\n".join(analysis.verdict_lines(verdicts)))
    save(args.out, pairs, many, verdicts=verdicts)
    print(f"\nresults: {args.out}")
    try:
        from bench.chart import write_chart  # pylint: disable=import-outside-toplevel  # bench-only dependency
        print(f"chart: {write_chart(pairs, args.out.with_suffix('.png'))}")
    except ImportError as exc:
        print(f"no chart: {exc} (make bench installs requirements/bench.txt)")
    failed = [f"{p['hosts']} h forks {p['forks']}: {p[k].get('message')}" for p in pairs for k in ("rotation", "push")
              if not p[k].get("ok")]
    if failed:
        print("FAILED: " + "; ".join(failed))
    return status


if __name__ == "__main__":
    sys.exit(main())
