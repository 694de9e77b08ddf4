"""The lab of the many-users run: N hosts, host i holds the key of its own IAM user bench-uNN.

tools/lab.py brings up the endpoint and a fleet whose hosts all hold one user's key; here every
other host gets a user of its own (created with a first key out of band, written into the host's
credentials file, the app restarted and seen on it), and consumers.yml names each host's user.
"""
from __future__ import annotations

import json
import pwd
import time
import urllib.request
from pathlib import Path

from tests.support.endpoint import Endpoint
from tools import lab
from tools.fleet import PROGRAM, SUPERVISOR_CONF, Fleet, write_credentials_file


def user_name(i: int) -> str:
    return f"bench-u{i:02d}"


def app_key_id(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return json.loads(response.read()).get("access_key_id")
    except (OSError, ValueError):
        return None


def up(directory: Path, users: int, timeout: float = 60) -> list[str]:
    """The lab; returns the user names, host i's user at index i-1."""
    names = [user_name(i) for i in range(1, users + 1)]
    lab.up(directory, users, names[0])
    fleet = Fleet.load(directory / "fleet")
    iam = Endpoint.from_state_file(directory / "endpoint.json").iam()
    account = pwd.getpwnam(fleet.app_user)
    expected = {}
    for name, host in zip(names[1:], fleet.hosts[1:]):
        iam.create_user(UserName=name)
        key = iam.create_access_key(UserName=name)["AccessKey"]
        write_credentials_file(fleet.host_dir(host) / "etc" / "credentials",
                               {"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]},
                               "default", account.pw_uid, account.pw_gid)
        fleet.exec(host, f"supervisorctl -c {SUPERVISOR_CONF} restart {PROGRAM}")
        expected[host.name] = key["AccessKeyId"]
    deadline = time.monotonic() + timeout
    for host in fleet.hosts[1:]:
        while app_key_id(fleet.app_url(host)) != expected[host.name]:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{host.name}: the app did not come up on {expected[host.name]}")
            time.sleep(0.2)
    inventory = json.loads((directory / "consumers.yml").read_text())
    inventory["all"]["children"]["app"] = {"hosts": {
        host.name: {"rotate_consumers": [lab.demo_consumer(name)]} for name, host in zip(names, fleet.hosts)}}
    (directory / "consumers.yml").write_text(json.dumps(inventory, indent=2) + "\n")
    return names
