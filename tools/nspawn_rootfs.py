#!/usr/bin/env python
"""The Debian rootfs the systemd fleet hosts boot (tools/nspawn_fleet.py), built once per recipe.

    nspawn_rootfs.py build      build it unless cached; prints its directory
    nspawn_rootfs.py path       the directory it would have (built or not)

mmdebstrap makes a minimal bookworm from the Debian mirror apt already uses on this machine (read
from apt's sources, never named here), then the harness adds what every systemd host needs: the
demo app's unit (Type=notify, ExecReload sends SIGHUP), its user, an unprivileged SSH user with
sudo, sshd's drop-in, an empty resolv.conf and a localhost-only /etc/hosts (else fact gathering
waits on DNS). The result lives in CACHE/rootfs-HASH, HASH of the recipe (packages, suite and
every file added), so a changed recipe builds anew; it is built under a lock in a temporary
directory and renamed into place, so labs side by side never race or see half a tree. Containers
use it read-only (--volatile=overlay), so one tree serves every host of every lab.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

CACHE = Path(os.environ.get("REKEY_NSPAWN_CACHE", "/var/cache/rekey-aws/nspawn"))
SUITE = "bookworm"
PACKAGES = ("systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "python3-boto3",
            "iproute2", "procps", "sudo", "libnss-myhostname")
# libnss-myhostname: the host resolves its own name (sudo looks it up) without DNS.
# Fixed ids: the harness owns the hosts' bind-mounted directories by these numbers.
APP_USER, APP_UID = "rekeyapp", 1990
SSH_USER, SSH_UID = "rekeyops", 1991
APP_UNIT = "demoapp.service"
RECIPE_VERSION = 1  # bump when the build steps below change in a way the files do not show

UNIT = """\
# The demo app as a systemd service (tools/nspawn_rootfs.py). Per-host settings come from
# /run/fleet/demoapp.env, bind-mounted by the harness.
[Unit]
Description=rekey.aws demo app (holds an AWS key)
After=network.target

[Service]
Type=notify
NotifyAccess=main
User=rekeyapp
Group=rekeyapp
WorkingDirectory=/var/lib/demoapp
Environment=HOME=/var/lib/demoapp
EnvironmentFile=/run/fleet/demoapp.env
ExecStart=/usr/bin/python3 /opt/demoapp/demoapp.py --listen 0.0.0.0:${DEMOAPP_PORT} \\
    --credentials-file /etc/demoapp/credentials --profile ${DEMOAPP_PROFILE} \\
    --pin-file /var/lib/demoapp/pin_key_id
ExecReload=/bin/kill -HUP $MAINPID
Restart=no
TimeoutStartSec=30
TimeoutStopSec=5
StandardOutput=append:/run/fleet/demoapp.log
StandardError=inherit

[Install]
WantedBy=multi-user.target
"""

SSHD = """\
# sshd on a systemd fleet host (tools/nspawn_rootfs.py): the lab's key only, for root and rekeyops.
AuthorizedKeysFile /etc/ssh/fleet_authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
PrintMotd no
PrintLastLog no
# Ansible opens many sessions at once through one multiplexed connection.
MaxStartups 100:30:200
MaxSessions 100
"""

FILES = {
    "etc/resolv.conf": "",
    "etc/hosts": "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n",
    f"etc/systemd/system/{APP_UNIT}": UNIT,
    "etc/ssh/sshd_config.d/fleet.conf": SSHD,
    f"etc/sudoers.d/{SSH_USER}": f"{SSH_USER} ALL=(ALL:ALL) NOPASSWD: ALL\n",
}
# Units a test host does not need, which only slow its boot or touch the network.
MASKED = ("apt-daily.timer", "apt-daily-upgrade.timer", "console-getty.service", "systemd-timesyncd.service",
          "e2scrub_reap.service", "e2scrub_all.timer", "fstrim.timer")


class RootfsError(Exception):
    """The rootfs could not be built; the message says why."""


def recipe() -> dict:
    return {"version": RECIPE_VERSION, "suite": SUITE, "packages": sorted(PACKAGES), "files": FILES,
            "masked": sorted(MASKED), "users": {APP_USER: APP_UID, SSH_USER: SSH_UID}, "unit": APP_UNIT}


def recipe_hash() -> str:
    return hashlib.sha256(json.dumps(recipe(), sort_keys=True).encode()).hexdigest()[:16]


def rootfs_path() -> Path:
    return CACHE / f"rootfs-{recipe_hash()}"


# ---- the mirror apt uses -------------------------------------------------------------------
def _deb822_entries(text: str) -> list[dict]:
    entries = []
    for stanza in re.split(r"\n\s*\n", text):
        fields = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        if "deb" in fields.get("types", "").split():
            for uri in fields.get("uris", "").split():
                entries.append({"uri": uri, "suites": fields.get("suites", "").split(),
                                "components": fields.get("components", "").split(),
                                "signed_by": fields.get("signed-by", "")})
    return entries


def _one_line_entries(text: str) -> list[dict]:
    entries = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        match = re.match(r"^deb\s+(?:\[(?P<opts>[^\]]*)\]\s+)?(?P<uri>\S+)\s+(?P<suite>\S+)\s*(?P<comps>.*)$", line)
        if match:
            opts = dict(o.split("=", 1) for o in (match.group("opts") or "").split() if "=" in o)
            entries.append({"uri": match.group("uri"), "suites": [match.group("suite")],
                            "components": match.group("comps").split(), "signed_by": opts.get("signed-by", "")})
    return entries


def apt_mirror(suite: str = SUITE, root: str = "/etc/apt") -> dict:
    """The first enabled `deb` source of apt on this machine that serves SUITE main: {uri, signed_by}."""
    entries = []
    for path in [f"{root}/sources.list"] + sorted(glob.glob(f"{root}/sources.list.d/*.list")):
        with contextlib.suppress(OSError):
            entries += _one_line_entries(Path(path).read_text())
    for path in sorted(glob.glob(f"{root}/sources.list.d/*.sources")):
        with contextlib.suppress(OSError):
            entries += _deb822_entries(Path(path).read_text())
    for entry in entries:
        if suite in entry["suites"] and "main" in entry["components"] and re.match(r"^(https?|file)://", entry["uri"]):
            return entry
    raise RootfsError(f"apt on this machine has no enabled `deb` source for {suite} main in {root}/sources.list "
                      f"or {root}/sources.list.d/ (the systemd hosts' rootfs is built from that mirror)")


# ---- building ------------------------------------------------------------------------------
@contextlib.contextmanager
def _lock():
    CACHE.mkdir(parents=True, exist_ok=True, mode=0o755)
    with open(CACHE / "build.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(cmd: list[str], timeout: float = 900) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RootfsError(f"{' '.join(cmd[:3])} ... exited {proc.returncode}:\n"
                          f"{(proc.stderr or proc.stdout).strip()[-3000:]}")


def _customize(tree: Path) -> None:
    for rel, text in FILES.items():
        path = tree / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            path.unlink()
        path.write_text(text)
    (tree / f"etc/sudoers.d/{SSH_USER}").chmod(0o440)
    # nspawn names the host (--machine); a copied /etc/hostname would override that at boot.
    (tree / "etc/hostname").unlink(missing_ok=True)
    (tree / "etc/machine-id").write_text("")
    for path in ("etc/demoapp", "var/lib/demoapp", "var/lib/rekey-aws", "run/fleet", "opt/demoapp"):
        (tree / path).mkdir(parents=True, exist_ok=True)
    _run(["chroot", str(tree), "groupadd", "--gid", str(APP_UID), APP_USER])
    _run(["chroot", str(tree), "useradd", "--uid", str(APP_UID), "--gid", str(APP_UID), "--no-create-home",
          "--home-dir", "/var/lib/demoapp", "--shell", "/usr/sbin/nologin", APP_USER])
    _run(["chroot", str(tree), "useradd", "--uid", str(SSH_UID), "--user-group", "--create-home",
          "--shell", "/bin/bash", SSH_USER])
    wants = tree / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / APP_UNIT).unlink(missing_ok=True)
    (wants / APP_UNIT).symlink_to(f"/etc/systemd/system/{APP_UNIT}")
    for unit in MASKED:
        link = tree / "etc/systemd/system" / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    (tree / ".rekey-recipe.json").write_text(json.dumps(recipe(), indent=2, sort_keys=True) + "\n")


def _in_use(path: Path) -> bool:
    """Whether a systemd-nspawn on this machine boots this tree (then it stays)."""
    for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            if f"--directory={path}".encode() in Path(cmdline).read_bytes():
                return True
    return False


def ensure_rootfs() -> tuple[Path, float]:
    """The rootfs of the current recipe, built if missing: (its path, seconds spent building,
    0 when cached). Trees of older recipes that no container uses are removed."""
    target = rootfs_path()
    if (target / ".rekey-recipe.json").exists():
        return target, 0.0
    if not shutil.which("mmdebstrap"):
        raise RootfsError("mmdebstrap is missing: run tools/install_system_deps.sh")
    with _lock():
        if (target / ".rekey-recipe.json").exists():
            return target, 0.0  # another lab built it while we waited
        mirror = apt_mirror()
        started = time.monotonic()
        work = CACHE / f".build-{recipe_hash()}-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        options = f"[signed-by={mirror['signed_by']}] " if mirror["signed_by"].startswith("/") else ""
        try:
            _run(["mmdebstrap", "--quiet", "--mode=root", "--variant=apt", "--include=" + ",".join(PACKAGES),
                  SUITE, str(work), f"deb {options}{mirror['uri']} {SUITE} main"])
            _customize(work)
            work.rename(target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        seconds = time.monotonic() - started
        for old in CACHE.glob("rootfs-*"):
            if old != target and not _in_use(old):
                shutil.rmtree(old, ignore_errors=True)
        return target, seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="nspawn_rootfs.py", description=__doc__.split("\n\n", maxsplit=1)[0])
    p.add_argument("command", choices=["build", "path"])
    args = p.parse_args(argv)
    if args.command == "path":
        print(rootfs_path())
        return 0
    if os.geteuid() != 0:
        print("nspawn_rootfs.py: building needs root (mmdebstrap --mode=root, chroot)", file=sys.stderr)
        return 1
    try:
        path, seconds = ensure_rootfs()
    except RootfsError as exc:
        print(f"nspawn_rootfs.py: {exc}", file=sys.stderr)
        return 1
    print(f"{path} ({'built in %.1f s' % seconds if seconds else 'cached'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
