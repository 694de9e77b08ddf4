"""Test-only helpers for the rotation on the fleet: a lab with the strict endpoint on the fleet's
bridge, consumers written as an extra inventory, the playbook run for real, and out-of-band reads
of the hosts and of IAM. Also a command-line health check for a second consumer on a host
(`python rotate_support.py sts-check ...`), run on the fleet hosts by the rotation itself."""
from __future__ import annotations

import argparse
import configparser
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "playbooks" / "rotate.yml"
VENV_PYTHON = str(Path(sys.executable))
# The prober's period in the fleet tests. Each probe is an STS call by the app and one by the
# endpoint: at the demo's 0.1 s, 3 hosts keep a fifth of a core busy for the whole run. A key
# that stops authenticating stays refused for seconds (until a rollback at the soonest), so a
# quarter second still sees every auth failure; restart gaps are counted, not timed.
PROBE_INTERVAL_S = 0.25


def demo_consumer(user: str, **overrides) -> dict:
    """The fleet's demo app as a consumer: its credentials profile, restarted by supervisorctl,
    healthy when /health answers 200 with the key id it should use."""
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
        "health_timeout_s": 20,
    }
    consumer.update(overrides)
    return consumer


def everywhere(lab, *consumers) -> dict:
    """The same consumers on every host of the lab."""
    return {host: list(consumers) for host in lab.hosts}


def sts_check_consumer(user: str, name: str, path: str, profile: str = "default", file_format: str = "credentials",
                       **overrides) -> dict:
    """A consumer without a service (a cron job, say): a file whose health check calls STS with the
    key in it. file_format: credentials (a profile) or env (AWS_ACCESS_KEY_ID=... lines)."""
    consumer = {
        "name": name,
        "iam_user": user,
        "path": path,
        "format": "env" if file_format == "env" else "credentials",
        "owner": "{{ fleet_app_user }}",
        "group": "{{ fleet_app_group }}",
        "mode": "0600",
        "apply": "none",
        "health_command": (f"{VENV_PYTHON} {Path(__file__).resolve()} sts-check --file {path} --format {file_format}"
                           f" --profile {profile} --endpoint-url {{{{ fleet_endpoint_url }}}} --region {{{{ fleet_region }}}}"),
        "health_timeout_s": 10,
    }
    if file_format != "env":
        consumer["profile"] = profile
    consumer.update(overrides)
    return consumer


class RotateLab:
    """One fleet and one endpoint shared by a test module; each test seeds its own IAM user."""

    def __init__(self, fleet, endpoint, workdir: Path):
        self.fleet = fleet
        self.ep = endpoint
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.vault_file = self.dir / "vault-pass"
        self.vault_file.write_text("lab vault secret\n")
        self.vault_file.chmod(0o600)
        self.store_dir = self.dir / "store"
        self.runs = 0

    @property
    def hosts(self) -> list[str]:
        return [h.name for h in self.fleet.hosts]

    # --- seeding ---------------------------------------------------------------------------
    def seed(self, user: str | None = None, prefix: str = "rot") -> tuple[str, dict]:
        """A fresh IAM user whose first key every host's demo app runs on (restarted, healthy)."""
        user = user or self.ep.new_user(prefix)
        key = self.ep.iam().create_access_key(UserName=user)["AccessKey"]
        for host in self.hosts:
            self.unpin(host)
            self.write_credentials(host, "/etc/demoapp/credentials", key["AccessKeyId"], key["SecretAccessKey"])
            self.fleet.exec(host, self.fleet.app_restart_command)
        for host in self.hosts:
            self.wait_health(host, key["AccessKeyId"])
        return user, key

    def write_credentials(self, host: str, path: str, key_id: str, secret: str, profile: str = "default") -> None:
        body = f"[{profile}]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n"
        self.fleet.exec(host, f"umask 077 && mkdir -p $(dirname {path}) && cat > {path} && "
                              f"chown rekeyapp:$(id -gn rekeyapp) {path} && chmod 600 {path}", input=body)

    def pin(self, host: str, key_id: str) -> None:
        self.fleet.exec(host, f"echo {key_id} > /var/lib/demoapp/pin_key_id")

    def unpin(self, host: str) -> None:
        self.fleet.exec(host, "rm -f /var/lib/demoapp/pin_key_id")

    # --- reading ---------------------------------------------------------------------------
    def health(self, host: str) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(self.fleet.app_url(host), timeout=5) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")
        except OSError as exc:
            return -1, {"error": str(exc)}

    def wait_health(self, host: str, key_id: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while True:
            status, body = self.health(host)
            if status == 200 and body.get("access_key_id") == key_id:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{host}: health {status} {body}, expected 200 with {key_id}")
            time.sleep(0.1)

    def app_key_id(self, host: str) -> str | None:
        status, body = self.health(host)
        return body.get("access_key_id") if status == 200 else None

    def file_key_id(self, host: str, path: str = "/etc/demoapp/credentials", profile: str = "default") -> str | None:
        proc = self.fleet.exec(host, f"cat {path}", check=False)
        if proc.returncode != 0:
            return None
        parser = configparser.ConfigParser()
        parser.read_string(proc.stdout)
        return parser.get(profile, "aws_access_key_id", fallback=None)

    def read(self, host: str, path: str) -> str:
        return self.fleet.exec(host, f"cat {path}").stdout

    def write(self, host: str, path: str, text: str) -> None:
        self.fleet.exec(host, f"umask 077 && cat > {path} && chown rekeyapp:$(id -gn rekeyapp) {path}", input=text)

    def stat(self, host: str, path: str) -> str:
        """'mode owner' of a file on a host, or '' when it does not exist."""
        return self.fleet.exec(host, f"stat -c '%a %U' {path} 2>/dev/null || true").stdout.strip()

    def files(self, host: str, pattern: str) -> list[str]:
        out = self.fleet.exec(host, f"ls -1 {pattern} 2>/dev/null || true").stdout.split()
        return sorted(out)

    def keys(self, user: str) -> dict[str, str]:
        """{key id: status} out of band."""
        meta = self.ep.iam().list_access_keys(UserName=user)["AccessKeyMetadata"]
        return {k["AccessKeyId"]: k["Status"] for k in meta}

    # --- running ---------------------------------------------------------------------------
    def inventory(self, consumers: dict[str, list[dict]]) -> Path:
        """An extra inventory giving each host its rotate_consumers."""
        import yaml
        path = self.dir / f"consumers-{self.runs}.yml"
        data = {"all": {"hosts": {host: {"rotate_consumers": items} for host, items in consumers.items()}}}
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def extra_vars(self, **overrides) -> dict:
        values = {
            "rotate_aws": {"endpoint_url": self.ep.endpoint_url, "region": self.ep.region,
                           "access_key": self.ep.access_key_id, "secret_key": self.ep.secret_access_key},
            "rotate_store_dir": str(self.store_dir),
            "rotate_report_path": str(self.dir / "reports" / "rotate-{run_id}.json"),
            "rotate_idle_window_s": 0,
            "rotate_deactivate_settle_s": 0,
            "rotate_verify_timeout_s": 60,
        }
        values.update(overrides)
        return values

    def run(self, consumers: dict[str, list[dict]], *, args: list[str] | None = None, check: bool = False,
            diff: bool = False, vault: bool = True, env: dict | None = None, **overrides):
        from tests.support.ansible_run import run_playbook
        self.runs += 1
        extra_inventory = self.inventory(consumers)
        cmd_args = ["-i", str(extra_inventory)]
        if vault:
            cmd_args += ["--vault-password-file", str(self.vault_file)]
        run = run_playbook(PLAYBOOK, inventory=str(self.fleet.inventory_path), extra_vars=self.extra_vars(**overrides),
                           check=check, diff=diff, args=cmd_args + (args or []), env=env)
        run.report = self.last_report()
        return run

    def last_report(self) -> dict | None:
        reports = sorted((self.dir / "reports").glob("rotate-*.json"), key=lambda p: p.stat().st_mtime)
        return json.loads(reports[-1].read_text()) if reports else None


def read_key(path: str, file_format: str = "credentials", profile: str = "default") -> tuple[str, str]:
    """(key id, secret) from a credentials profile or an env file (KEY=VALUE lines)."""
    if file_format == "env":
        values = dict(line.split("=", 1) for line in Path(path).read_text().splitlines() if "=" in line)
        return values["AWS_ACCESS_KEY_ID"], values["AWS_SECRET_ACCESS_KEY"]
    parser = configparser.ConfigParser()
    if not parser.read(path) or not parser.has_section(profile):
        raise KeyError(f"no profile {profile} in {path}")
    return parser[profile]["aws_access_key_id"], parser[profile]["aws_secret_access_key"]


def _sts_check(argv: list[str]) -> int:
    """Exit 0 when the key in the file authenticates through STS."""
    import boto3
    from botocore.config import Config
    p = argparse.ArgumentParser(prog="rotate_support.py sts-check")
    p.add_argument("--file", required=True)
    p.add_argument("--format", choices=["credentials", "env"], default="credentials")
    p.add_argument("--profile", default="default")
    p.add_argument("--endpoint-url", required=True)
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--secret-id", help="check the key held in this secret instead (read with the file's key)")
    p.add_argument("--id-field", default="aws_access_key_id")
    p.add_argument("--secret-field", default="aws_secret_access_key")
    args = p.parse_args(argv)
    try:
        key_id, secret = read_key(args.file, args.format, args.profile)
        if args.secret_id:
            held = json.loads(boto3.client("secretsmanager", endpoint_url=args.endpoint_url, region_name=args.region,
                                           aws_access_key_id=key_id, aws_secret_access_key=secret).get_secret_value(
                SecretId=args.secret_id)["SecretString"])
            key_id, secret = held[args.id_field], held[args.secret_field]
    except Exception as exc:  # pylint: disable=broad-exception-caught  # any failure to read is unhealthy
        print(f"cannot read a key from {args.secret_id or args.file}: {type(exc).__name__}", file=sys.stderr)
        return 2
    sts = boto3.client("sts", endpoint_url=args.endpoint_url, region_name=args.region,
                       aws_access_key_id=key_id, aws_secret_access_key=secret,
                       config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=2))
    try:
        arn = sts.get_caller_identity()["Arn"]
    except Exception as exc:  # pylint: disable=broad-exception-caught  # any refusal is unhealthy
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
        print(f"{key_id}: {code}", file=sys.stderr)
        return 1
    print(f"{key_id} {arn}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "sts-check":
        sys.exit(_sts_check(sys.argv[2:]))
    sys.exit("usage: rotate_support.py sts-check --file F --profile P --endpoint-url URL [--region R]")
