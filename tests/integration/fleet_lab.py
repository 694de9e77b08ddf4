"""The lab each fleet test file shares across its tests: the strict endpoint bound on a fresh
fleet's bridge and N hosts whose apps start on a key of a throwaway user."""
from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from pathlib import Path
from typing import Iterator

from tests.integration.rotate_support import REPO, RotateLab
from tests.support.endpoint import read_log, start_endpoint, stop_endpoint
from tools.fleet import make_fleet


@contextlib.contextmanager
def fleet_lab(directory: Path, hosts: int, *, prefix: str = "auto", subnet: str = "auto",
              kind: str = "supervisord") -> Iterator[RotateLab]:
    """Installs the fleet's Debian packages, brings up the bridge, the endpoint and the hosts
    (kind: supervisord, or systemd containers); tears all of it down on exit and fails if the
    endpoint did not stop cleanly."""
    deps = subprocess.run([str(REPO / "tools" / "install_system_deps.sh")], capture_output=True, text=True,
                          check=False)
    assert deps.returncode == 0, deps.stderr
    fleet = make_fleet(directory / "fleet", kind=kind, prefix=prefix, subnet=subnet)
    proc = None
    started = time.monotonic()
    try:
        address = fleet.bridge_up()
        proc, ep = start_endpoint(address, 0, directory / "endpoint.json")
        boot = ep.iam().create_access_key(UserName=ep.new_user("boot"))["AccessKey"]
        fleet.up(hosts, endpoint_url=ep.endpoint_url, region=ep.region,
                 credentials={"access_key_id": boot["AccessKeyId"], "secret_access_key": boot["SecretAccessKey"]})
        # Shown with -s or -rP; the first case of each file also shows it as its setup duration.
        print(f"lab {fleet.prefix}: endpoint and {hosts} hosts up in {time.monotonic() - started:.1f} s "
              f"(hosts: {fleet.timings})")
        yield RotateLab(fleet, ep, directory / "work")
    finally:
        try:
            fleet.down()
        finally:
            if proc is not None:
                rc = stop_endpoint(proc)
                assert rc in (0, -signal.SIGTERM), f"endpoint exited {rc}:\n{read_log(proc)}"
