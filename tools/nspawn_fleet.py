"""systemd fleet hosts: each host a systemd-nspawn container booting systemd 252 as PID 1.

The same fleet as tools/fleet.py (bridge, network namespaces PREFIX-hostNN with their veth, the
same inventory names, DIR/hosts/NAME for each host's private directories), but each host boots the
cached Debian rootfs (tools/nspawn_rootfs.py) read-only with a volatile overlay, inside the
harness's network namespace (--network-namespace-path). systemd runs sshd and the demo app as the
unit demoapp.service (Type=notify, ExecReload sends SIGHUP), so `apply: restart` and
`apply: reload` go through ansible.builtin.service and systemctl as on a real server. SSH: root,
and the unprivileged rekeyops with passwordless sudo (for rotate_become), both with the lab's key.

Each nspawn runs with --keep-unit --register=no in a cgroup of its own under rekey-fleet/NAME
(name=systemd and the unified hierarchy): it is moved there before it starts, so teardown finds
exactly what this lab started. Teardown: SIGTERM to each nspawn (systemd inside powers off in
order), SIGKILL only for what is still in the lab's cgroups after a grace period, then the
namespaces, veths and bridge as for supervisord hosts, then the cgroup directories.

Chosen per fleet: tools.fleet.make_fleet(DIR, kind="systemd"), `fleet.py up --kind systemd`.
"""
from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tools import nspawn_rootfs
from tools.fleet import (APP_DIR, CONFIG_DIR, CREDENTIALS_PATH, HOST_ENV, PIN_PATH, PROGRAM, ROTATE_DIR,
                         RUN_DIR, STATE_DIR, Fleet, FleetError, _pid_alive, _terminate, _to_yaml)


def _cgroup_roots() -> tuple[Path, ...]:
    """Where each nspawn gets its own cgroup: the unified hierarchy alone (cgroup v2), or the
    name=systemd hierarchy and the unified one of a hybrid layout (as on this machine)."""
    base = Path("/sys/fs/cgroup")
    if (base / "cgroup.controllers").exists():
        return (base,)
    return tuple(p for p in (base / "systemd", base / "unified") if p.is_dir())


CGROUP_ROOTS = _cgroup_roots()
CGROUP_PARENT = "rekey-fleet"
NSPAWN = "/usr/bin/systemd-nspawn"
PROPAGATE_DIR = Path("/run/systemd/nspawn/propagate")
STOP_GRACE_S = 10  # an orderly poweroff of a container takes about a second


class NspawnFleet(Fleet):
    """A fleet of systemd hosts; the API of Fleet (up, exec, down, inventory)."""

    kind = "systemd"
    app_restart_command = f"systemctl restart {PROGRAM}"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rootfs: Path | None = None
        self.rootfs_seconds = 0.0  # spent building the rootfs in the last up() (0: cached)

    # ---- up ----------------------------------------------------------------------------
    def up(self, n: int, **kwargs) -> "NspawnFleet":
        """As Fleet.up; first builds the rootfs unless it is cached (timings: "rootfs")."""
        _nspawn_preflight()
        started = time.monotonic()
        try:
            self.rootfs, self.rootfs_seconds = nspawn_rootfs.ensure_rootfs()
        except nspawn_rootfs.RootfsError as exc:
            raise FleetError(str(exc)) from None
        rootfs_s = time.monotonic() - started
        super().up(n, **kwargs)
        self.timings = {"rootfs": round(rootfs_s, 3), **self.timings}
        return self

    def _prepare_files(self, creds: dict, profile: str) -> None:
        super()._prepare_files(creds, profile)
        uid = gid = nspawn_rootfs.APP_UID  # the app user's ids inside the rootfs
        for h in self.hosts:
            hdir = self.host_dir(h)
            for path in (hdir / "etc", hdir / "var", hdir / "etc" / "credentials"):
                os.chown(path, uid, gid)
            (hdir / "run" / "demoapp.env").write_text(
                f"AWS_ENDPOINT_URL={self.endpoint_url}\nAWS_REGION={self.region}\n"
                f"DEMOAPP_PORT={self.app_port}\nDEMOAPP_PROFILE={profile}\n")

    def _start_sshd(self) -> None:
        """Boot every container; sshd and the app are its units (the waits watch nspawn's pid)."""
        for h in self.hosts:
            hdir = self.host_dir(h)
            for cgroup in self._cgroups(h):
                if _cgroup_pids(cgroup):
                    raise FleetError(f"cgroup {cgroup} holds processes: a fleet with prefix {self.prefix} "
                                     "is still running or was not torn down")
                _remove_cgroup(cgroup)  # empty, left by a fleet of that name that was killed
                cgroup.mkdir(parents=True)
            binds = [f"--bind={hdir / 'etc'}:{CONFIG_DIR}", f"--bind={hdir / 'var'}:{STATE_DIR}",
                     f"--bind={hdir / 'run'}:{RUN_DIR}", f"--bind={self.rotate_dir(h)}:{ROTATE_DIR}",
                     f"--bind-ro={self.dir / 'app'}:{APP_DIR}",
                     f"--bind-ro={self.dir / 'ssh' / 'authorized_keys'}:/etc/ssh/fleet_authorized_keys"]
            nspawn = [NSPAWN, "--quiet", "--boot", "--keep-unit", "--register=no", f"--directory={self.rootfs}",
                      "--volatile=overlay", f"--machine={h.name}", f"--network-namespace-path=/run/netns/{h.name}",
                      "--resolv-conf=off", "--timezone=off", "--link-journal=no", "--console=read-only", *binds]
            join = "; ".join(f"echo $$ > {shlex.quote(str(c / 'cgroup.procs'))}" for c in self._cgroups(h))
            # sh moves itself into the host's cgroups, then execs: the Popen pid is nspawn's.
            h.sshd_pid = self._spawn(["sh", "-c", f"set -e; {join}; exec {shlex.join(nspawn)}"], hdir / "sshd.log")
        self.save()

    def _start_supervisord(self) -> None:
        """Nothing to start: systemd starts the app; the wait for it watches nspawn."""
        for h in self.hosts:
            h.supervisord_pid = h.sshd_pid
        self.save()

    def _write_inventory(self, profile: str) -> None:
        ssh_args = " ".join([
            "-o StrictHostKeyChecking=no", "-o UserKnownHostsFile=/dev/null", "-o LogLevel=ERROR",
            "-o ControlMaster=auto", "-o ControlPersist=60s", f"-o ControlPath={self.control_dir}/%C"])
        inventory = {"all": {"children": {"app": {
            "hosts": {h.name: {
                "ansible_host": h.address,
                "ansible_user": "root",
                "ansible_ssh_private_key_file": str(self.key_path),
                "ansible_python_interpreter": "/usr/bin/python3",
                "ansible_ssh_common_args": ssh_args,
                "ansible_ssh_pipelining": True,
                "fleet_app_url": self.app_url(h),
            } for h in self.hosts},
            "vars": {
                "fleet_host_kind": self.kind,
                "fleet_app_service": PROGRAM,
                "fleet_app_program": PROGRAM,
                "fleet_app_port": self.app_port,
                "fleet_app_health_url": f"http://127.0.0.1:{self.app_port}/health",
                "fleet_credentials_path": CREDENTIALS_PATH,
                "fleet_credentials_profile": profile,
                "fleet_pin_path": PIN_PATH,
                "fleet_app_user": nspawn_rootfs.APP_USER,
                "fleet_app_group": nspawn_rootfs.APP_USER,
                "fleet_unprivileged_user": nspawn_rootfs.SSH_USER,
                "fleet_endpoint_url": self.endpoint_url,
                "fleet_region": self.region,
            }}}}}
        header = f"# Written by tools/nspawn_fleet.py for the fleet in {self.dir}; removed hosts vanish on down.\n"
        self.inventory_path.write_text(header + _to_yaml(inventory))

    # ---- use ---------------------------------------------------------------------------
    def leader(self, host) -> int:
        """The pid (as seen here) of the host's systemd, PID 1 inside the container."""
        h = self.host(host)
        if not self._ours(h):
            raise FleetError(f"host {h.name} is not running (nspawn pid {h.sshd_pid} is gone)")
        for pid in _cgroup_pids(self._cgroups(h)[-1]):
            if _ppid(pid) == h.sshd_pid and Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                return pid
        raise FleetError(f"host {h.name}: systemd is not (yet) running in its container")

    def exec(self, host, cmd: str, *, check: bool = True, input: str | None = None,
             timeout: float = 30) -> subprocess.CompletedProcess:
        """Run a shell command as root inside the host's container (all its namespaces)."""
        h = self.host(host)
        full = ["nsenter", f"--target={self.leader(h)}", "--mount", "--uts", "--ipc", "--net", "--pid",
                "--root", "--wd", "--", "/bin/sh", "-c", cmd]
        proc = subprocess.run(full, input=input, capture_output=True, text=True, timeout=timeout,
                              cwd="/", env=HOST_ENV, check=False)
        if check and proc.returncode != 0:
            raise FleetError(f"on {h.name}: {cmd!r} exited {proc.returncode}: "
                             f"{proc.stderr.strip() or proc.stdout.strip()}")
        return proc

    def unprivileged_ssh_command(self, host) -> list[str]:
        """ssh as the unprivileged rekeyops (who may sudo) instead of root."""
        cmd = self.ssh_command(host)
        return cmd[:-1] + [cmd[-1].replace("root@", f"{nspawn_rootfs.SSH_USER}@")]

    # ---- down --------------------------------------------------------------------------
    def down(self) -> list[str]:
        """Stop each container in order (SIGTERM to nspawn), kill what is left in this lab's
        cgroups, then tear the network down as Fleet.down does and remove the cgroups."""
        removed = []
        running = stopping = [h for h in self.hosts if self._ours(h)]
        deadline = time.monotonic() + STOP_GRACE_S
        while running and time.monotonic() < deadline:
            # Again every second: a systemd still booting ignores the first (no handler yet).
            for h in running:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(h.sshd_pid, signal.SIGTERM)
            pause = time.monotonic() + 1
            while time.monotonic() < min(pause, deadline) and any(_pid_alive(h.sshd_pid) for h in running):
                time.sleep(0.05)
            running = [h for h in running if _pid_alive(h.sshd_pid)]
        removed += [f"container {h.name} (nspawn {h.sshd_pid})" for h in stopping]
        for h in self.hosts:
            left = [pid for cgroup in self._cgroups(h) for pid in _cgroup_pids(cgroup)]
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            removed += [f"killed process {pid} ({h.name})" for pid in left]
        for proc in self._procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        removed += super().down()  # the network, control masters; sets the state
        for h in self.hosts:
            for cgroup in self._cgroups(h):
                if cgroup.exists():
                    _remove_cgroup(cgroup)
                    removed.append(f"cgroup {cgroup}")
            # nspawn's own per-machine directory, left empty when it was stopped while booting.
            propagate = PROPAGATE_DIR / h.name
            if propagate.is_dir() and not _pid_alive(h.sshd_pid):
                with contextlib.suppress(OSError):
                    propagate.rmdir()
                    removed.append(f"directory {propagate}")
        return removed

    # ---- helpers -----------------------------------------------------------------------
    def _cgroups(self, h) -> list[Path]:
        return [root / CGROUP_PARENT / h.name for root in CGROUP_ROOTS]

    def _ours(self, h) -> bool:
        """Whether the host's recorded nspawn pid is still the nspawn this fleet started."""
        if not _pid_alive(h.sshd_pid):
            return False
        try:
            cmdline = Path(f"/proc/{h.sshd_pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return f"--machine={h.name}".encode() in cmdline and f"--bind={self.host_dir(h) / 'etc'}:{CONFIG_DIR}".encode() in cmdline


def down_stale(prefix: str) -> list[str]:
    """What systemd fleets with this prefix left after their owner died, by name: the processes
    still in their cgroups (a container's systemd outlives a killed nspawn), then the cgroups and
    nspawn's per-machine directories. fleet.py down --stale calls it after the network pass."""
    cgroups = sorted(c for root in CGROUP_ROOTS for c in (root / CGROUP_PARENT).glob(f"{prefix}-host*") if c.is_dir())
    pids = sorted({pid for cgroup in cgroups for pid in _cgroup_pids(cgroup)})
    _terminate(pids)
    removed = [f"process {pid}" for pid in pids]
    for cgroup in cgroups:
        _remove_cgroup(cgroup)
        removed.append(f"cgroup {cgroup}")
    for directory in sorted(PROPAGATE_DIR.glob(f"{prefix}-host*")) if PROPAGATE_DIR.is_dir() else []:
        with contextlib.suppress(OSError):
            directory.rmdir()
            removed.append(f"directory {directory}")
    return removed


def _cgroup_pids(cgroup: Path) -> list[int]:
    """Every process in the cgroup and below it."""
    pids = []
    if not cgroup.is_dir():
        return pids
    for procs in cgroup.rglob("cgroup.procs"):
        with contextlib.suppress(OSError):
            pids += [int(p) for p in procs.read_text().split()]
    return sorted(set(pids))


def _remove_cgroup(cgroup: Path) -> None:
    """rmdir the cgroup and its children, deepest first (a cgroup dir holds only kernel files)."""
    for path in sorted((p for p in cgroup.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            path.rmdir()
    with contextlib.suppress(OSError):
        cgroup.rmdir()


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _nspawn_preflight() -> None:
    if os.geteuid() != 0:
        raise FleetError("the systemd fleet needs root (network namespaces, cgroups, systemd-nspawn)")
    missing = [pkg for tool, pkg in ((NSPAWN, "systemd-container"), ("mmdebstrap", "mmdebstrap"), ("nsenter", "util-linux"))
               if not shutil.which(tool)]
    if missing:
        raise FleetError(f"missing packages {', '.join(missing)}: run tools/install_system_deps.sh")
    if not CGROUP_ROOTS:
        raise FleetError("systemd hosts need cgroup v2 at /sys/fs/cgroup, or the name=systemd hierarchy at "
                         "/sys/fs/cgroup/systemd (hybrid layout); neither is mounted")
