"""`make demo`: a real rotation against the strict local endpoint and a fleet of SSH hosts.

Brings up the strict IAM/STS endpoint on the fleet's bridge, an IAM user `demo-app` with a first
key, HOSTS fleet hosts whose demo apps run on that key, and the prober; runs
playbooks/rotate.yml; prints the rotation's report and the prober's totals; tears everything
down. Exits non-zero when the rotation failed, when an app is not on the new key, when the old key
still exists, or when the prober saw an authentication failure. Leaves the JSON report and the
prober's timeline in demo-out/.

SYSTEMD=1 (or --kind systemd): the hosts are systemd containers (tools/nspawn_fleet.py) and the
app is reloaded through its unit (ansible.builtin.service, SIGHUP) instead of restarted by
supervisorctl.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.endpoint import start_endpoint, stop_endpoint  # noqa: E402  pylint: disable=wrong-import-position
from tools.fleet import Fleet, make_fleet  # noqa: E402  pylint: disable=wrong-import-position
from tools.lab import consumers_inventory  # noqa: E402  pylint: disable=wrong-import-position
from tools.prober import Prober  # noqa: E402  pylint: disable=wrong-import-position

USER = "demo-app"


def write_private(path: Path, text: str) -> Path:
    path.touch(mode=0o600)
    path.write_text(text)
    return path


def run_rotation(work: Path, out: Path, fleet: Fleet, endpoint) -> int:
    inventory = write_private(work / "consumers.yml", json.dumps(consumers_inventory(USER, fleet.kind)))
    vault_pass = write_private(work / "vault-pass", secrets.token_hex(16) + "\n")
    extra_vars = {
        "rotate_force": True,  # the demo's key is brand new, so it is not due by age
        "rotate_idle_window_s": 0,
        "rotate_deactivate_settle_s": 1,
        "rotate_store_dir": str(work / "store"),
        "rotate_report_path": str(out / "report.json"),
    }
    env = dict(os.environ,
               ANSIBLE_COLLECTIONS_PATH=str(REPO / ".venv" / "collections"),
               ANSIBLE_RETRY_FILES_ENABLED="false",
               ANSIBLE_HOST_KEY_CHECKING="false",
               AWS_ACCESS_KEY_ID=endpoint.access_key_id,
               AWS_SECRET_ACCESS_KEY=endpoint.secret_access_key,
               AWS_ENDPOINT_URL=endpoint.endpoint_url,
               AWS_REGION=endpoint.region)
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), str(REPO / "playbooks" / "rotate.yml"),
           "-i", str(fleet.inventory_path), "-i", str(inventory),
           "--vault-password-file", str(vault_pass), "-e", json.dumps(extra_vars)]
    return subprocess.run(cmd, env=env, cwd=str(REPO), check=False).returncode


def check_outcome(fleet: Fleet, endpoint, old_key_id: str, prober_totals: dict) -> list[str]:
    """What is wrong after the run, read out of band; empty when the rotation kept its promise."""
    problems = []
    keys = {k["AccessKeyId"]: k["Status"] for k in endpoint.iam().list_access_keys(UserName=USER)["AccessKeyMetadata"]}
    if old_key_id in keys:
        problems.append(f"the old key {old_key_id} still exists ({keys[old_key_id]})")
    new_ids = [k for k, status in keys.items() if k != old_key_id and status == "Active"]
    if len(new_ids) != 1:
        problems.append(f"expected one new Active key, IAM has {keys}")
    else:
        for host in fleet.hosts:
            in_use = app_key_id(fleet.app_url(host))
            if in_use != new_ids[0]:
                problems.append(f"{host.name}: the app answers {in_use}, not the new key {new_ids[0]}")
    failures = prober_totals.get("overall", {}).get("auth_failures", 0)
    if failures:
        problems.append(f"the prober saw {failures} authentication failure(s)")
    return problems


def app_key_id(url: str) -> str:
    """The key id a healthy app reports, or what went wrong."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read()).get("access_key_id")
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except OSError as exc:
        return f"no answer ({exc})"


def print_summary(out: Path, totals: dict, problems: list[str], seconds: float) -> None:
    overall = totals.get("overall", {})
    print("\n== prober ==")
    print(f"probes {overall.get('probes', 0)}, ok {overall.get('ok', 0)}, "
          f"auth failures {overall.get('auth_failures', 0)}, connection gaps {overall.get('gaps', 0)} "
          f"(longest {overall.get('longest_gap_s', 0)} s, during restarts)")
    print(f"report: {out / 'report.json'}; prober timeline: {out / 'prober-timeline.jsonl'}")
    verdict = "PASSED" if not problems else "FAILED: " + "; ".join(problems)
    print(f"\n== demo {verdict} in {seconds:.0f} s ==")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=int(os.environ.get("HOSTS", "5")))
    parser.add_argument("--out", default=str(REPO / "demo-out"))
    parser.add_argument("--kind", choices=["supervisord", "systemd"],
                        default="systemd" if os.environ.get("SYSTEMD", "") not in ("", "0") else "supervisord",
                        help="the hosts: supervisord (default) or systemd containers (default when SYSTEMD=1)")
    args = parser.parse_args()
    started = time.monotonic()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    work = Path(tempfile.mkdtemp(prefix="rekey-demo-"))
    # Each kind its own names: the two demos can run side by side.
    fleet = make_fleet(work / "fleet", kind=args.kind, **({"prefix": "rkdemo", "subnet": "10.232.0.0/24"}
                                                          if args.kind == "supervisord" else
                                                          {"prefix": "rkdsd", "subnet": "10.232.1.0/24"}))
    endpoint_proc = None
    try:
        address = fleet.bridge_up()
        endpoint_proc, endpoint = start_endpoint(address, 0, work / "endpoint.json")
        iam = endpoint.iam()
        iam.create_user(UserName=USER)
        first = iam.create_access_key(UserName=USER)["AccessKey"]
        print(f"endpoint {endpoint.endpoint_url}; user {USER} with key {first['AccessKeyId']}; "
              f"bringing up {args.hosts} {args.kind} hosts")
        fleet.up(args.hosts, endpoint_url=endpoint.endpoint_url,
                 credentials={"access_key_id": first["AccessKeyId"], "secret_access_key": first["SecretAccessKey"]})
        print(f"hosts up: {fleet.timings}")
        prober = Prober(fleet.app_urls, timeline=out / "prober-timeline.jsonl").start()
        rc = run_rotation(work, out, fleet, endpoint)
        totals = prober.stop()
        (out / "prober-totals.json").write_text(json.dumps(totals, indent=2) + "\n")
        problems = check_outcome(fleet, endpoint, first["AccessKeyId"], totals)
        if rc != 0:
            problems.insert(0, f"ansible-playbook exited {rc}")
        print_summary(out, totals, problems, time.monotonic() - started)
        return 1 if problems else 0
    finally:
        fleet.down()
        if endpoint_proc is not None:
            stop_endpoint(endpoint_proc)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
