"""`make bench`: forced rotations on fleets of several sizes; time and AWS calls per rotation.

For each fleet size (--hosts 1,5,10): a lab (tools/lab.py: the strict endpoint on a fleet bridge,
an IAM user with a first key, N hosts whose demo apps run on it), the endpoint's counts reset,
one forced rotation (playbooks/rotate.yml, as tools/demo.py runs it), then the counts read back
and the lab torn down. Records the total wall time, the time per phase from the rotation's
report, IAM calls by action and STS calls.

Times are printed, never asserted. The exit status checks ARCHITECTURE.md invariant 6: every
IAM call runs on the controller and their number does not grow with the fleet.
    0  no IAM action was called more often on a larger fleet than on the smallest one
    1  some IAM action was (the table names it)
    2  a rotation failed or the lab could not be brought up: nothing to compare
Writes everything to demo-out/bench.json and each run's ansible-playbook output to
demo-out/bench-logs/.
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

from tests.support.endpoint import Endpoint  # noqa: E402  pylint: disable=wrong-import-position
from tools import lab  # noqa: E402  pylint: disable=wrong-import-position

USER = "bench-app"


def fleet_sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"--hosts {text!r}: expected fleet sizes such as 1,5,10") from None
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError(f"--hosts {text!r}: expected positive fleet sizes such as 1,5,10")
    return sizes


def rotation_env() -> dict:
    """The caller's environment without AWS credentials or settings: every AWS call must go to
    the lab's endpoint with the lab's admin key (consumers.yml sets rotate_aws)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(ANSIBLE_COLLECTIONS_PATH=os.environ.get("ANSIBLE_COLLECTIONS_PATH", str(REPO / ".venv" / "collections")),
               ANSIBLE_RETRY_FILES_ENABLED="false", ANSIBLE_HOST_KEY_CHECKING="false",
               ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    return env


def rotate(directory: Path, log: Path) -> int:
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), str(REPO / "playbooks" / "rotate.yml"),
           "-i", str(directory / "fleet" / "inventory.yml"), "-i", str(directory / "consumers.yml"),
           "--vault-password-file", str(directory / "vault-pass"), "-e", "rotate_force=true"]
    with open(log, "w", encoding="utf-8") as out:
        return subprocess.run(cmd, env=rotation_env(), cwd=str(REPO), stdout=out, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, check=False).returncode


def measure(hosts: int, logs: Path) -> dict:
    """One lab of `hosts` hosts, one forced rotation; what it cost."""
    directory = Path(tempfile.mkdtemp(prefix=f"rekey-bench-{hosts}-"))
    result: dict = {"hosts": hosts}
    try:
        started = time.monotonic()
        lab.up(directory, hosts, USER)
        result["lab_up_s"] = round(time.monotonic() - started, 2)
        endpoint = Endpoint.from_state_file(directory / "endpoint.json")
        endpoint.reset_counts()
        log = logs / f"hosts-{hosts}.log"
        started = time.monotonic()
        result["rc"] = rotate(directory, log)
        result["wall_s"] = round(time.monotonic() - started, 2)
        counts = endpoint.counts()
        report_path = directory / "report.json"
        report = json.loads(report_path.read_text()) if report_path.exists() else {}
        result.update(
            ok=result["rc"] == 0 and report.get("ok") is True,
            message=report.get("message", f"no report; see {log}"),
            log=str(log),
            phases_s=report.get("durations_s", {}),
            iam_calls={a: n for a, n in counts.items() if a.startswith("iam:")},
            sts_calls={a: n for a, n in counts.items() if a.startswith("sts:")},
            other_calls={a: n for a, n in counts.items() if not a.startswith(("iam:", "sts:"))})
        result["iam_total"] = sum(result["iam_calls"].values())
        result["sts_total"] = sum(result["sts_calls"].values())
    except Exception as exc:  # pylint: disable=broad-exception-caught  # reported, and exit 2
        result.update(ok=False, message=f"{type(exc).__name__}: {exc}")
    finally:
        lab.down(directory)
        shutil.rmtree(directory, ignore_errors=True)
    return result


def growth(results: list[dict]) -> list[str]:
    """IAM actions called more often on a larger fleet than on the smallest one."""
    base = results[0]
    problems = []
    for res in results[1:]:
        for action in sorted(set(base["iam_calls"]) | set(res["iam_calls"])):
            small, large = base["iam_calls"].get(action, 0), res["iam_calls"].get(action, 0)
            if large > small:
                problems.append(f"{action}: {small} calls with {base['hosts']} host(s), {large} with {res['hosts']}")
    return problems


def print_tables(results: list[dict]) -> None:
    print(f"\n{'hosts':>5} {'wall s':>7} {'prepare':>8} {'distribute':>10} {'finish':>7} {'IAM calls':>9} "
          f"{'STS calls':>9}  result")
    for res in results:
        ph = res.get("phases_s", {})
        print(f"{res['hosts']:>5} {res.get('wall_s', '-'):>7} {ph.get('prepare', '-'):>8} "
              f"{ph.get('distribute', '-'):>10} {ph.get('finish', '-'):>7} {res.get('iam_total', '-'):>9} "
              f"{res.get('sts_total', '-'):>9}  {'ok' if res['ok'] else res['message']}")
    measured = [r for r in results if "iam_calls" in r]
    actions = sorted({a for r in measured for a in list(r["iam_calls"]) + list(r["sts_calls"])})
    if actions:
        width = max(len(a) for a in actions)
        print(f"\n{'calls by action':<{width}} " + " ".join(f"{str(r['hosts']) + ' h':>6}" for r in measured))
        for action in actions:
            cells = " ".join(f"{r['iam_calls'].get(action, r['sts_calls'].get(action, 0)):>6}" for r in measured)
            print(f"{action:<{width}} {cells}")
    print("\nsts:* counts every caller: the controller's propagation checks and the demo apps' own "
          "calls on each /health the rotation's health checks make (the endpoint cannot tell them apart).")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=fleet_sizes, default=fleet_sizes("1,5,10"),
                        help="fleet sizes, comma-separated (default 1,5,10)")
    parser.add_argument("--out", type=Path, default=REPO / "demo-out" / "bench.json",
                        help="where to write the results (default demo-out/bench.json)")
    args = parser.parse_args()
    logs = args.out.parent / "bench-logs"
    logs.mkdir(parents=True, exist_ok=True)
    results = []
    for hosts in args.hosts:
        print(f"rotating on {hosts} host(s) ...", flush=True)
        results.append(measure(hosts, logs))
    print_tables(results)
    failed = [r for r in results if not r["ok"]]
    problems = [] if failed else growth(results)
    args.out.write_text(json.dumps({"results": results, "iam_growth": problems,
                                    "machine": {"cpus": os.cpu_count()}}, indent=2) + "\n")
    print(f"\nresults: {args.out}")
    if failed:
        print("FAILED: " + "; ".join(f"{r['hosts']} host(s): {r['message']}" for r in failed))
        return 2
    if problems:
        print("FAILED: the IAM calls grow with the fleet (invariant 6): " + "; ".join(problems))
        return 1
    print("IAM calls per rotation do not grow with the fleet (invariant 6): "
          + ", ".join(f"{r['iam_total']} with {r['hosts']} host(s)" for r in results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
