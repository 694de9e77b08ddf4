"""Start the strict IAM/STS endpoint (tools/iam_endpoint.py) and talk to it. Test-only.

Usable outside pytest (demo, fleet tests):
    proc, ep = start_endpoint("10.231.0.1", 0, Path("/tmp/ep.json"))
    ...
    stop_endpoint(proc)
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import boto3
from botocore.config import Config

REPO = Path(__file__).resolve().parents[2]
SERVER = REPO / "tools" / "iam_endpoint.py"
OUT_OF_BAND_HEADER = "X-Rekey-Out-Of-Band"
# IAM actions that change state; write_counts() keeps only these.
IAM_WRITE_PREFIXES = ("Create", "Update", "Delete", "Put", "Tag", "Untag", "Attach", "Detach", "Add",
                      "Remove", "Upload", "Enable", "Deactivate", "Set", "Change", "Reset", "Resync")


class EndpointError(RuntimeError):
    pass


def _mark_out_of_band(request, **_):
    request.headers[OUT_OF_BAND_HEADER] = "1"


@dataclass
class Endpoint:
    endpoint_url: str
    region: str
    access_key_id: str
    secret_access_key: str = field(repr=False)
    account_id: str
    control_url: str

    @classmethod
    def from_state_file(cls, path: str | Path) -> Endpoint:
        state = json.loads(Path(path).read_text())
        return cls(**{name: state[name] for name in cls.__dataclass_fields__})

    # --- control API -------------------------------------------------------------------------
    def _control(self, method: str, route: str, payload: dict | None = None) -> dict:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(self.control_url + route, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise EndpointError(f"{method} {self.control_url}{route} -> HTTP {exc.code}: {detail}") from None

    def faults(self) -> dict:
        return self._control("GET", "/faults")

    def set_faults(self, **faults) -> dict:
        return self._control("POST", "/faults", faults)

    def clear_faults(self) -> dict:
        return self._control("POST", "/faults/clear", {})

    def scheduled_keys(self) -> dict:
        """Keys created under a propagation delay or flap: {key id: {created_at, delay_s, flap}}."""
        return self._control("GET", "/keys")

    def counts(self) -> dict:
        return self._control("GET", "/counts")

    def faulted_counts(self) -> dict:
        """The requests a fault answered: {action: {error code: n}}."""
        return self._control("GET", "/counts/faulted")

    def host_counts(self) -> dict:
        """The counts of the requests that did not come from the controller (the fleet's hosts)."""
        return self._control("GET", "/counts/hosts")

    def reset_counts(self) -> None:
        self._control("POST", "/counts/reset", {})

    def write_counts(self) -> dict:
        """Counts of IAM actions that change state (Create*, Update*, Delete*, Put*, Tag*, ...)."""
        return {name: n for name, n in self.counts().items()
                if name.startswith("iam:") and name[4:].startswith(IAM_WRITE_PREFIXES)}

    # --- boto3 clients -----------------------------------------------------------------------
    def client(self, service: str, access_key_id: str | None = None, secret: str | None = None, *,
               out_of_band: bool | None = None, max_attempts: int = 1):
        """A client with the admin key (out-of-band by default) or with the given key (in-band by
        default: counted and faulted like any caller). max_attempts=1: errors are seen as sent."""
        if (access_key_id is None) != (secret is None):
            raise ValueError("give both access_key_id and secret, or neither (the admin key)")
        if out_of_band is None:
            out_of_band = access_key_id is None
        client = boto3.client(
            service, endpoint_url=self.endpoint_url, region_name=self.region,
            aws_access_key_id=access_key_id or self.access_key_id,
            aws_secret_access_key=secret or self.secret_access_key,
            config=Config(retries={"mode": "standard", "total_max_attempts": max_attempts}))
        if out_of_band:
            client.meta.events.register("before-sign.*.*", _mark_out_of_band)
        return client

    def iam(self, access_key_id: str | None = None, secret: str | None = None, **kw):
        return self.client("iam", access_key_id, secret, **kw)

    def sts(self, access_key_id: str | None = None, secret: str | None = None, **kw):
        return self.client("sts", access_key_id, secret, **kw)

    def secretsmanager(self, access_key_id: str | None = None, secret: str | None = None, **kw):
        return self.client("secretsmanager", access_key_id, secret, **kw)

    def new_user(self, prefix: str = "u") -> str:
        """Create a uniquely named IAM user (no policies, no keys) out-of-band; return its name."""
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.iam().create_user(UserName=name)
        return name

    def connection_args(self) -> dict:
        """The rekey.aws connection options for the admin key."""
        return {"access_key": self.access_key_id, "secret_key": self.secret_access_key,
                "region": self.region, "endpoint_url": self.endpoint_url}


def start_endpoint(host: str, port: int, state_file: str | Path, *, timeout: float = 60,
                   python: str = sys.executable) -> tuple[subprocess.Popen, Endpoint]:
    """Run tools/iam_endpoint.py (port 0: a free one) and wait until it wrote its state file."""
    state_file = Path(state_file)
    state_file.unlink(missing_ok=True)
    log = tempfile.TemporaryFile(prefix="iam-endpoint-", suffix=".log")
    proc = subprocess.Popen([python, str(SERVER), "--host", host, "--port", str(port),
                             "--state-file", str(state_file)],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    proc.log = log
    deadline = time.monotonic() + timeout
    while not state_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            why = (f"exited with {proc.returncode}" if proc.returncode is not None
                   else f"wrote no state file within {timeout:g} s")
            stop_endpoint(proc)
            raise EndpointError(f"iam_endpoint on {host}:{port} {why}; its output:\n{read_log(proc)}")
        time.sleep(0.05)
    return proc, Endpoint.from_state_file(state_file)


def read_log(proc: subprocess.Popen, limit: int = 4000) -> str:
    """The last `limit` characters of what the endpoint wrote to stdout and stderr."""
    proc.log.seek(0)
    return proc.log.read().decode(errors="replace")[-limit:]


def stop_endpoint(proc: subprocess.Popen, timeout: float = 10) -> int:
    """SIGTERM, wait, SIGKILL if it hangs; return the exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode
