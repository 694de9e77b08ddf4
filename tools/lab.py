"""A rotation lab that outlives the command that made it (for molecule's create and destroy).

    python tools/lab.py up --dir DIR [--hosts N] [--user NAME] [--kind systemd]
    python tools/lab.py down --dir DIR

`up` starts the strict endpoint on a fleet bridge (in the background), creates the IAM user with
a first key, brings up N fleet hosts whose demo apps run on it, and writes into DIR:
  fleet/inventory.yml  the hosts (tools/fleet.py)
  consumers.yml        every host holds USER's key in the demo app's credentials file, and the
                       role's variables for the lab (its endpoint's admin key: mode 0600)
  endpoint.json        the endpoint's address and admin key (mode 0600)
  vault-pass           the vault secret for the rotation's key store (mode 0600)
  lab.json             what `down` needs: the endpoint's pid, the user, the first key id
`down` stops the endpoint and tears the fleet down; it is idempotent.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.endpoint import Endpoint  # noqa: E402  pylint: disable=wrong-import-position
from tools.fleet import KINDS, Fleet, make_fleet  # noqa: E402  pylint: disable=wrong-import-position


def demo_consumer(user: str, kind: str = "supervisord") -> dict:
    """The fleet's demo app as a consumer: credentials profile, /health; on supervisord hosts
    restarted by supervisorctl, on systemd hosts reloaded through its unit (SIGHUP, no gap)."""
    consumer = {
        "name": "demoapp",
        "iam_user": user,
        "path": "{{ fleet_credentials_path }}",
        "format": "credentials",
        "profile": "{{ fleet_credentials_profile }}",
        "owner": "{{ fleet_app_user }}",
        "group": "{{ fleet_app_group }}",
        "mode": "0600",
        "apply": "command",
        "apply_command": "{{ fleet_supervisorctl }} restart {{ fleet_app_program }}",
        "health_url": "{{ fleet_app_health_url }}",
        "health_status": 200,
        "health_expect_key_id": True,
    }
    if kind == "systemd":
        consumer.update(apply="reload", service="{{ fleet_app_service }}")
        del consumer["apply_command"]
    return consumer


def consumers_inventory(user: str, kind: str = "supervisord") -> dict:
    return {"all": {"children": {"app": {"vars": {"rotate_consumers": [demo_consumer(user, kind)]}}}}}


def lab_vars(directory: Path, endpoint: Endpoint) -> dict:
    """The role's variables for the lab: its endpoint and admin key, a fast finish, its store."""
    return {
        "rotate_aws": endpoint.connection_args(),
        "rotate_idle_window_s": 0,
        "rotate_deactivate_settle_s": 1,
        "rotate_store_dir": str(directory / "store"),
        "rotate_report_path": str(directory / "report.json"),
    }


def start_background_endpoint(address: str, directory: Path, timeout: float = 60) -> tuple[int, Endpoint]:
    state = directory / "endpoint.json"
    state.unlink(missing_ok=True)
    with open(directory / "endpoint.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, str(REPO / "tools" / "iam_endpoint.py"), "--host", address,
                                 "--port", "0", "--state-file", str(state)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    deadline = time.monotonic() + timeout
    while not state.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"lab: the endpoint did not start; see {directory / 'endpoint.log'}")
        time.sleep(0.05)
    return proc.pid, Endpoint.from_state_file(state)


def up(directory: Path, hosts: int, user: str, kind: str = "supervisord") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    fleet = make_fleet(directory / "fleet", kind=kind, prefix="auto", subnet="auto")
    pid = None
    try:
        pid, endpoint = start_background_endpoint(fleet.bridge_up(), directory)
        (directory / "lab.json").write_text(json.dumps({"endpoint_pid": pid, "user": user}))
        iam = endpoint.iam()
        iam.create_user(UserName=user)
        first = iam.create_access_key(UserName=user)["AccessKey"]
        # 200 apps starting at once on 2 cores take longer than the fleet's default 30 s.
        fleet.up(hosts, endpoint_url=endpoint.endpoint_url,
                 credentials={"access_key_id": first["AccessKeyId"], "secret_access_key": first["SecretAccessKey"]},
                 timeout=max(30.0, 0.5 * hosts))
        inventory = consumers_inventory(user, kind)
        inventory["all"]["vars"] = lab_vars(directory, endpoint)
        (directory / "consumers.yml").touch(mode=0o600)
        (directory / "consumers.yml").write_text(json.dumps(inventory, indent=2) + "\n")
        vault_pass = directory / "vault-pass"
        vault_pass.touch(mode=0o600)
        vault_pass.write_text(secrets.token_hex(16) + "\n")
        (directory / "lab.json").write_text(json.dumps({"endpoint_pid": pid, "user": user,
                                                        "first_key_id": first["AccessKeyId"]}))
    except BaseException:
        down(directory)
        raise


def down(directory: Path) -> None:
    if (directory / "fleet" / "fleet.json").exists():
        Fleet.load(directory / "fleet").down()
    lab = directory / "lab.json"
    if lab.exists():
        pid = json.loads(lab.read_text()).get("endpoint_pid")
        if pid and _is_endpoint(pid):
            os.kill(pid, signal.SIGTERM)
        lab.unlink()


def _is_endpoint(pid: int) -> bool:
    try:
        return "iam_endpoint.py" in Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up")
    p_up.add_argument("--dir", required=True, type=Path)
    p_up.add_argument("--hosts", type=int, default=2)
    p_up.add_argument("--user", default="molecule-app")
    p_up.add_argument("--kind", choices=KINDS, default="supervisord",
                      help="the hosts: supervisord (default) or systemd containers (tools/nspawn_fleet.py)")
    p_down = sub.add_parser("down")
    p_down.add_argument("--dir", required=True, type=Path)
    args = parser.parse_args()
    if args.command == "up":
        up(args.dir.resolve(), args.hosts, args.user, args.kind)
    else:
        down(args.dir.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
