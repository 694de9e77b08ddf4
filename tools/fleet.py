#!/usr/bin/env python
"""A test fleet: N SSH hosts in network namespaces, each running the demo app under supervisord.

Every host is a network namespace on a bridge, with its own address, hostname (UTS namespace),
sshd (root, key auth only) and, inside its own mount namespace, private copies of the app's
paths (/etc/demoapp, /var/lib/demoapp, /run/fleet) bind-mounted from DIR/hosts/NAME. supervisord runs
the demo app there as an unprivileged user. An ssh session lands in both namespaces, so Ansible
sees each host as a separate machine.

    fleet.py bridge --dir DIR                 create only the bridge (to bind an endpoint on it)
    fleet.py up N --dir DIR --endpoint-url URL --initial-credentials FILE
    fleet.py exec --dir DIR HOST -- CMD...    run a command inside a host's namespaces
    fleet.py down --dir DIR                   tear everything down (idempotent)
    fleet.py down --stale PREFIX              remove what dead fleets left, by name

The apps must reach the endpoint from their namespaces, so bind it on the bridge:
    addr=$(fleet.py bridge --dir D)           # 10.231.0.1
    python tools/iam_endpoint.py --host "$addr" --port 4566 --state-file D/endpoint.json &
    fleet.py up 5 --dir D --endpoint-url "http://$addr:4566" --initial-credentials KEY.json

Writes DIR/inventory.yml (group `app`) and DIR/fleet.json (hosts, addresses, pids). Needs root
and the packages from tools/install_system_deps.sh.
"""
from __future__ import annotations

import argparse
import configparser
import contextlib
import fcntl
import grp
import hashlib
import ipaddress
import json
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from string import Template

TOOLS = Path(__file__).resolve().parent
TEMPLATES = TOOLS / "fleet_templates"

# What every host sees privately (bind mounts in its mount namespace), as seen on the host.
CONFIG_DIR = "/etc/demoapp"
STATE_DIR = "/var/lib/demoapp"
RUN_DIR = "/run/fleet"
APP_DIR = "/opt/demoapp"
# The rotate role's default backup dir: private to each host, as on a real machine, so no lab
# sees another's backups (they hold secrets).
ROTATE_DIR = "/var/lib/rekey-aws"
# Held while a fleet picks its names and subnet and creates its bridge, or adds the app user:
# fleets of tests running side by side must not both take what the other is about to take.
MACHINE_LOCK = Path("/run/lock/rekey-fleet.lock")
CREDENTIALS_PATH = f"{CONFIG_DIR}/credentials"
PIN_PATH = f"{STATE_DIR}/pin_key_id"
SUPERVISOR_CONF = f"{RUN_DIR}/supervisord.conf"
PROGRAM = "demoapp"
SSH_PORT = 22
FIRST_HOST_OFFSET = 10  # host01 gets the subnet's .11
KEY_ID_RE = re.compile(r"^[A-Z0-9]{16,128}$")
PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,5}$")
# The environment of everything started on a host: nothing of the caller's (AWS_* included).
HOST_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
REQUIRED_TOOLS = {"ip": "iproute2", "unshare": "util-linux", "nsenter": "util-linux",
                  "mount": "util-linux", "ssh-keygen": "openssh-client", "ssh": "openssh-client",
                  "/usr/sbin/sshd": "openssh-server", "/usr/bin/supervisord": "supervisor",
                  "/usr/bin/supervisorctl": "supervisor", "/usr/bin/python3": "python3"}


class FleetError(Exception):
    """A fleet operation failed; the message says what and where."""


@dataclass
class Host:
    name: str          # inventory name and network namespace name
    veth: str          # root-side end of the host's veth pair
    address: str
    sshd_pid: int | None = None
    supervisord_pid: int | None = None

    @property
    def namespace(self) -> str:
        return self.name


def _run(cmd: list[str], *, input: str | None = None, check: bool = True,
         timeout: float = 30) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise FleetError(f"{shlex.join(cmd)} exited {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def _netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def _port_open(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.2):
            return True
    except OSError:
        return False


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"({path}: {exc.strerror})"


def read_credentials(path: str | Path, profile: str = "default") -> dict:
    """Key id and secret from a JSON file ({"access_key_id", "secret_access_key"}, e.g. an
    endpoint state file) or an AWS shared credentials file (that profile)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise FleetError(f"cannot read initial credentials file {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except ValueError:
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read_string(text, source=str(path))
        except configparser.Error:
            raise FleetError(f"initial credentials file {path} is neither JSON nor an AWS credentials "
                             "(INI) file") from None
        if not parser.has_section(profile):
            raise FleetError(f"initial credentials file {path} has no profile [{profile}] "
                             f"(profiles: {', '.join(parser.sections()) or 'none'})")
        data = {"access_key_id": parser.get(profile, "aws_access_key_id", fallback=None),
                "secret_access_key": parser.get(profile, "aws_secret_access_key", fallback=None)}
    if not isinstance(data, dict) or not data.get("access_key_id") or not data.get("secret_access_key"):
        raise FleetError(f"initial credentials file {path} must hold access_key_id and secret_access_key "
                         "(JSON) or aws_access_key_id and aws_secret_access_key (INI)")
    return {"access_key_id": data["access_key_id"], "secret_access_key": data["secret_access_key"]}


def _check_credentials(creds: dict) -> None:
    key_id = creds.get("access_key_id")
    if not isinstance(key_id, str) or not KEY_ID_RE.match(key_id):
        raise FleetError(f"initial access key id {key_id!r} is not an AWS access key id "
                         "(expected 16-128 upper-case letters and digits)")
    secret = creds.get("secret_access_key")
    if not isinstance(secret, str) or not secret or any(c in secret for c in "\r\n[]"):
        raise FleetError(f"the secret access key for {key_id} is empty or not a single-line value")


class Fleet:
    """The fleet in one directory, each host under supervisord (kind "supervisord"; the systemd
    hosts are tools/nspawn_fleet.py, see make_fleet). Use as a context manager to always tear it down:

        with Fleet(tmp, prefix="rkt", subnet="10.231.7.0/24") as fleet:
            fleet.bridge_up()                       # optional: to start an endpoint on it first
            fleet.up(3, endpoint_url=url, credentials={"access_key_id": ..., "secret_access_key": ...})
            fleet.exec("rkt-host01", "cat /etc/demoapp/credentials")
    """

    kind = "supervisord"
    app_restart_command = f"supervisorctl -c {SUPERVISOR_CONF} restart {PROGRAM}"

    def __init__(self, directory: str | Path, *, prefix: str = "rk", subnet: str = "10.231.0.0/24",
                 app_user: str = "rekeyapp", app_port: int = 8080):
        """prefix and subnet "auto": an unused random prefix and a free /24 in 10.231.0.0/16, so
        fleets of tests running side by side never meet."""
        self.auto_names = (prefix == "auto", subnet == "auto")
        prefix = unique_prefix() if prefix == "auto" else prefix
        subnet = free_subnet() if subnet == "auto" else subnet
        if not PREFIX_RE.match(prefix):
            raise FleetError(f"prefix {prefix!r} must be 1-6 lower-case letters or digits, starting "
                             "with a letter (interface names are limited to 15 characters)")
        try:
            net = ipaddress.ip_network(subnet, strict=True)
        except ValueError as exc:
            raise FleetError(f"subnet {subnet!r} is not a network address such as 10.231.0.0/24: {exc}") from None
        if net.version != 4 or net.prefixlen > 27:
            raise FleetError(f"subnet {subnet!r} must be IPv4 with room for hosts (/27 or larger)")
        if not 1 <= int(app_port) <= 65535:
            raise FleetError(f"app port {app_port!r} must be 1-65535")
        self.dir = Path(directory).resolve()
        self.prefix = prefix
        self.subnet = str(net)
        self.app_user = app_user
        self.app_port = int(app_port)
        self.bridge = f"{prefix}br0"
        self.bridge_address = str(net.network_address + 1)
        self.bridge_created = False
        self.hosts: list[Host] = []
        self.endpoint_url: str | None = None
        self.region = "us-east-1"
        self.state = "new"
        self._procs: list[subprocess.Popen] = []
        self.timings: dict[str, float] = {}  # seconds per phase of the last up()

    # ---- paths -------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.dir / "fleet.json"

    @property
    def inventory_path(self) -> Path:
        return self.dir / "inventory.yml"

    @property
    def key_path(self) -> Path:
        return self.dir / "ssh" / "id_ed25519"

    @property
    def control_dir(self) -> Path:
        """ssh control sockets. A unix socket path holds at most 107 bytes and ssh makes
        DIR/%C (40 hex) plus a 17-character temporary suffix, so DIR is always short, whatever
        the fleet's own directory (pytest's temp path grows with its run counter)."""
        return Path("/tmp") / f"rekey-cp-{hashlib.sha1(str(self.dir).encode()).hexdigest()[:12]}"

    def host_dir(self, host: str | Host) -> Path:
        return self.dir / "hosts" / self.host(host).name

    def rotate_dir(self, host: str | Host) -> Path:
        """The host's own ROTATE_DIR (the rotate role's backups), as the controller sees it."""
        return self.host_dir(host) / "rekey"

    def host(self, host: str | int | Host) -> Host:
        """A host by name (rk-host01), by its number (1), or the Host itself."""
        if isinstance(host, Host):
            return host
        if isinstance(host, str) and host.isdigit():
            host = int(host)
        for h in self.hosts:
            if h.name == host or (isinstance(host, int) and h.name.endswith(f"host{host:02d}")):
                return h
        raise FleetError(f"no host {host!r} in the fleet in {self.dir} "
                         f"(hosts: {', '.join(h.name for h in self.hosts) or 'none'})")

    def app_url(self, host: str | Host, path: str = "/health") -> str:
        return f"http://{self.host(host).address}:{self.app_port}{path}"

    @property
    def app_urls(self) -> dict[str, str]:
        return {h.name: self.app_url(h) for h in self.hosts}

    # ---- state -------------------------------------------------------------------------
    def save(self) -> None:
        data = {"kind": self.kind, "state": self.state, "dir": str(self.dir), "prefix": self.prefix, "subnet": self.subnet,
                "bridge": {"name": self.bridge, "address": self.bridge_address,
                           "created": self.bridge_created},
                "app": {"user": self.app_user, "port": self.app_port, "program": PROGRAM,
                        "credentials_path": CREDENTIALS_PATH, "pin_path": PIN_PATH,
                        "supervisor_conf": SUPERVISOR_CONF},
                "endpoint_url": self.endpoint_url, "region": self.region,
                "ssh_private_key": str(self.key_path), "control_dir": str(self.control_dir),
                "inventory": str(self.inventory_path),
                "hosts": [dict(asdict(h), app_url=self.app_url(h)) for h in self.hosts]}
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(self.state_file)

    @classmethod
    def load(cls, directory: str | Path) -> "Fleet":
        path = Path(directory).resolve() / "fleet.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise FleetError(f"no fleet in {path.parent} ({path.name} is missing)") from None
        except ValueError as exc:
            raise FleetError(f"{path} is not valid JSON: {exc}") from None
        kind = fleet_class(data.get("kind", Fleet.kind)) if cls is Fleet else cls
        fleet = kind(directory, prefix=data["prefix"], subnet=data["subnet"],
                     app_user=data["app"]["user"], app_port=data["app"]["port"])
        fleet.state = data["state"]
        fleet.bridge_created = data["bridge"]["created"]
        fleet.endpoint_url = data.get("endpoint_url")
        fleet.region = data.get("region") or fleet.region
        fleet.hosts = [Host(name=h["name"], veth=h["veth"], address=h["address"],
                            sshd_pid=h.get("sshd_pid"), supervisord_pid=h.get("supervisord_pid"))
                       for h in data["hosts"]]
        return fleet

    def __enter__(self) -> "Fleet":
        return self

    def __exit__(self, *exc) -> None:
        self.down()

    # ---- up ----------------------------------------------------------------------------
    def bridge_up(self) -> str:
        """Create the bridge (idempotent for this fleet) and return its address."""
        _preflight()
        if self.bridge_created and _link_exists(self.bridge):
            return self.bridge_address
        with machine_lock():
            return self._create_bridge()

    def _create_bridge(self) -> str:
        auto_prefix, auto_subnet = self.auto_names
        if auto_prefix and not _names_free(self.prefix):
            self._rename(unique_prefix())
        if auto_subnet and any(ipaddress.ip_network(self.subnet).overlaps(net) for dummy, net in _networks_in_use()):
            self._resubnet(free_subnet())
        if _link_exists(self.bridge):
            raise FleetError(f"bridge {self.bridge} already exists but this fleet ({self.dir}) did not "
                             f"create it: another fleet uses prefix {self.prefix!r}; tear it down "
                             f"({_teardown_hint(self.prefix)}) or choose another prefix")
        for other, network in _networks_in_use():
            if network.overlaps(ipaddress.ip_network(self.subnet)):
                raise FleetError(f"subnet {self.subnet} overlaps {network} on {other}: another fleet or "
                                 "network uses it; choose another subnet (or \"auto\")")
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.bridge_created = True
        if self.state in ("new", "down"):
            self.state = "bridge"
        self.save()  # recorded before it exists, so down() removes it after any failure
        try:
            plen = ipaddress.ip_network(self.subnet).prefixlen
            _run(["ip", "-batch", "-"], input="\n".join([
                f"link add {self.bridge} type bridge",
                f"addr add {self.bridge_address}/{plen} dev {self.bridge}",
                f"link set {self.bridge} up"]) + "\n")
        except BaseException:
            self.down()
            raise
        return self.bridge_address

    def _rename(self, prefix: str) -> None:
        self.prefix, self.bridge = prefix, f"{prefix}br0"

    def _resubnet(self, subnet: str) -> None:
        self.subnet = subnet
        self.bridge_address = str(ipaddress.ip_network(subnet).network_address + 1)

    def up(self, n: int, *, endpoint_url: str, credentials: dict | str | Path, region: str = "us-east-1",
           profile: str = "default", timeout: float = 30) -> "Fleet":
        """Bring up n hosts whose apps use `credentials` (a dict or a file, see read_credentials)
        against `endpoint_url`. Cleans up everything when it fails or is interrupted half way."""
        if self.state not in ("new", "bridge", "down"):
            raise FleetError(f"the fleet in {self.dir} is {self.state}; run down first")
        n = self._check_count(n)
        if not re.match(r"^https?://[^/\s]+", endpoint_url or ""):
            raise FleetError(f"endpoint url {endpoint_url!r} must be http(s)://HOST:PORT")
        if re.match(r"^https?://(127\.|localhost\b|\[::1\])", endpoint_url):
            raise FleetError(f"endpoint url {endpoint_url} is a loopback address, which inside a host "
                             f"namespace is the host itself: bind the endpoint on the bridge address "
                             f"{self.bridge_address} instead")
        if not re.match(r"^[A-Za-z0-9_.-]+$", profile):
            raise FleetError(f"profile {profile!r} must be letters, digits, '_', '.', '-'")
        creds = read_credentials(credentials, profile) if isinstance(credentials, (str, Path)) else dict(credentials)
        _check_credentials(creds)
        _preflight()
        bridge_was_there = self.bridge_created
        self.bridge_up()  # first: "auto" names taken meanwhile by another fleet are chosen anew here
        net = ipaddress.ip_network(self.subnet)
        hosts = [Host(name=f"{self.prefix}-host{i:02d}", veth=f"{self.prefix}v{i:02d}",
                      address=str(net.network_address + FIRST_HOST_OFFSET + i)) for i in range(1, n + 1)]
        for h in hosts:
            if _netns_exists(h.name) or _link_exists(h.veth):
                how = _teardown_hint(self.prefix, h.name)
                if not bridge_was_there:
                    self.down()  # no hosts of ours yet: removes only the bridge made just now
                raise FleetError(f"network namespace or link for {h.name} ({h.veth}) already exists: "
                                 f"another fleet uses prefix {self.prefix!r}; tear it down ({how}) or "
                                 "choose another prefix")
        self.endpoint_url, self.region, self.hosts = endpoint_url, region, hosts
        self.state = "starting"
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.save()
        try:
            mark = time.monotonic()

            def lap(phase):
                nonlocal mark
                now = time.monotonic()
                self.timings[phase] = round(now - mark, 3)
                mark = now

            self.bridge_up()
            self._prepare_files(creds, profile)
            lap("files")
            self._network()
            lap("network")
            self._start_sshd()
            self._wait("sshd", SSH_PORT, lambda h: h.sshd_pid, lambda h: self.host_dir(h) / "sshd.log", timeout)
            lap("sshd")
            self._start_supervisord()
            self._wait("demo app", self.app_port, lambda h: h.supervisord_pid,
                       lambda h: self.host_dir(h) / "run" / f"{PROGRAM}.log", timeout)
            lap("apps")
            self._write_inventory(profile)
            self.state = "up"
            self.save()
        except BaseException as exc:
            try:
                self.down()
            except FleetError as cleanup:
                raise FleetError(f"{exc}; and cleaning up failed: {cleanup}") from exc
            raise
        return self

    def _check_count(self, n) -> int:
        net = ipaddress.ip_network(self.subnet)
        room = min(net.num_addresses - 2 - FIRST_HOST_OFFSET, 999)
        try:
            n = int(n)
        except (TypeError, ValueError):
            raise FleetError(f"host count {n!r} is not a number") from None
        if not 1 <= n <= room:
            raise FleetError(f"host count {n} must be between 1 and {room} for subnet {self.subnet}")
        return n

    def _prepare_files(self, creds: dict, profile: str) -> None:
        with machine_lock():
            uid, gid = _ensure_user(self.app_user)
        for path in (CONFIG_DIR, STATE_DIR, RUN_DIR, APP_DIR, ROTATE_DIR, "/run/sshd"):
            os.makedirs(path, mode=0o755, exist_ok=True)  # empty mount points in the root namespace
        ssh_dir = self.dir / "ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        for key in (self.key_path, ssh_dir / "host_ed25519_key"):
            if not key.exists():
                _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"rekey-fleet {self.dir}",
                      "-f", str(key)])
        shutil.copyfile(f"{self.key_path}.pub", ssh_dir / "authorized_keys")
        self.control_dir.mkdir(mode=0o700, exist_ok=True)
        app_dir = self.dir / "app"
        app_dir.mkdir(exist_ok=True)
        app_dir.chmod(0o755)
        shutil.copyfile(TOOLS / "demoapp.py", app_dir / "demoapp.py")
        (app_dir / "demoapp.py").chmod(0o644)
        sshd_tpl = Template((TEMPLATES / "sshd_config").read_text())
        sup_tpl = Template((TEMPLATES / "supervisord.conf").read_text())
        for h in self.hosts:
            hdir = self.host_dir(h)
            for sub, owner, mode in (("etc", (uid, gid), 0o700), ("var", (uid, gid), 0o700),
                                     ("run", (0, 0), 0o755)):
                d = hdir / sub
                d.mkdir(parents=True, exist_ok=True)
                os.chown(d, *owner)
                d.chmod(mode)
            self.rotate_dir(h).mkdir(exist_ok=True)
            self.rotate_dir(h).chmod(0o755)
            (hdir / "sshd_config").write_text(sshd_tpl.substitute(
                address=h.address, ssh_port=SSH_PORT, host_key=ssh_dir / "host_ed25519_key",
                pid_file=hdir / "sshd.pid", authorized_keys=ssh_dir / "authorized_keys"))
            (hdir / "run" / "supervisord.conf").write_text(sup_tpl.substitute(
                run_dir=RUN_DIR, program=PROGRAM, app_dir=APP_DIR, app_port=self.app_port,
                credentials_path=CREDENTIALS_PATH, profile=profile, pin_path=PIN_PATH,
                app_user=self.app_user, state_dir=STATE_DIR, endpoint_url=self.endpoint_url,
                region=self.region))
            write_credentials_file(hdir / "etc" / "credentials", creds, profile, uid, gid)

    def _network(self) -> None:
        plen = ipaddress.ip_network(self.subnet).prefixlen
        root = []
        for h in self.hosts:
            root += [f"netns add {h.name}",
                     f"link add {h.veth} type veth peer name eth0 netns {h.name}",
                     f"link set {h.veth} master {self.bridge}",
                     f"link set {h.veth} up"]
        _run(["ip", "-batch", "-"], input="\n".join(root) + "\n")
        for h in self.hosts:
            _run(["ip", "-n", h.name, "-batch", "-"], input="\n".join([
                f"addr add {h.address}/{plen} dev eth0", "link set eth0 up", "link set lo up"]) + "\n")

    def _start_sshd(self) -> None:
        for h in self.hosts:
            hdir = self.host_dir(h)
            mounts = [(hdir / "etc", CONFIG_DIR), (hdir / "var", STATE_DIR), (hdir / "run", RUN_DIR),
                      (self.rotate_dir(h), ROTATE_DIR), (self.dir / "app", APP_DIR)]
            script = f"set -e; hostname {h.name}; " + "; ".join(f"mount --bind {shlex.quote(str(src))} {dst}" for src, dst in mounts)
            script += f"; exec /usr/sbin/sshd -D -e -f {shlex.quote(str(hdir / 'sshd_config'))}"
            # ip netns exec, unshare and sh all exec: the Popen pid is sshd's.
            cmd = ["ip", "netns", "exec", h.name, "unshare", "--mount", "--uts", "--propagation", "private",
                   "sh", "-c", script]
            h.sshd_pid = self._spawn(cmd, hdir / "sshd.log")
        self.save()

    def _start_supervisord(self) -> None:
        for h in self.hosts:
            cmd = ["nsenter", f"--target={h.sshd_pid}", "--mount", "--net", "--uts", "--",
                   "/usr/bin/supervisord", "-n", "-c", SUPERVISOR_CONF]
            h.supervisord_pid = self._spawn(cmd, self.host_dir(h) / "supervisord.out")
        self.save()

    def _spawn(self, cmd: list[str], log: Path) -> int:
        with open(log, "ab") as out:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    cwd="/", env=HOST_ENV, start_new_session=True)
        self._procs.append(proc)
        return proc.pid

    def _wait(self, what: str, port: int, pid_of, log_of, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = list(self.hosts)
        while pending:
            for h in list(pending):
                if not _pid_alive(pid_of(h)):
                    raise FleetError(f"{what} on {h.name} exited while starting; its log "
                                     f"{log_of(h)}:\n{_tail(log_of(h))}")
                if _port_open(h.address, port):
                    pending.remove(h)
            if pending and time.monotonic() > deadline:
                h = pending[0]
                raise FleetError(f"{what} did not listen on port {port} within {timeout}s on "
                                 f"{', '.join(p.name for p in pending)}; log of {h.name} "
                                 f"({log_of(h)}):\n{_tail(log_of(h))}")
            if pending:
                time.sleep(0.05)

    def _write_inventory(self, profile: str) -> None:
        ssh_args = " ".join([
            "-o StrictHostKeyChecking=no", "-o UserKnownHostsFile=/dev/null", "-o LogLevel=ERROR",
            "-o ControlMaster=auto", "-o ControlPersist=60s", f"-o ControlPath={self.control_dir}/%C"])
        uid_group = grp.getgrgid(pwd.getpwnam(self.app_user).pw_gid).gr_name
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
                "fleet_supervisorctl": f"supervisorctl -c {SUPERVISOR_CONF}",
                "fleet_app_program": PROGRAM,
                "fleet_app_port": self.app_port,
                "fleet_app_health_url": f"http://127.0.0.1:{self.app_port}/health",
                "fleet_credentials_path": CREDENTIALS_PATH,
                "fleet_credentials_profile": profile,
                "fleet_pin_path": PIN_PATH,
                "fleet_app_user": self.app_user,
                "fleet_app_group": uid_group,
                "fleet_endpoint_url": self.endpoint_url,
                "fleet_region": self.region,
            }}}}}
        header = f"# Written by tools/fleet.py for the fleet in {self.dir}; removed hosts vanish on down.\n"
        self.inventory_path.write_text(header + _to_yaml(inventory))

    # ---- use ---------------------------------------------------------------------------
    def exec(self, host: str | int | Host, cmd: str, *, check: bool = True, input: str | None = None,
             timeout: float = 30) -> subprocess.CompletedProcess:
        """Run a shell command as root inside a host's network, mount and UTS namespaces."""
        h = self.host(host)
        if not _pid_alive(h.sshd_pid):
            raise FleetError(f"host {h.name} is not running (sshd pid {h.sshd_pid} is gone)")
        full = ["nsenter", f"--target={h.sshd_pid}", "--mount", "--net", "--uts", "--", "/bin/sh", "-c", cmd]
        proc = subprocess.run(full, input=input, capture_output=True, text=True, timeout=timeout,
                              cwd="/", env=HOST_ENV, check=False)
        if check and proc.returncode != 0:
            raise FleetError(f"on {h.name}: {cmd!r} exited {proc.returncode}: "
                             f"{proc.stderr.strip() or proc.stdout.strip()}")
        return proc

    def ssh_command(self, host: str | int | Host) -> list[str]:
        """An ssh command line (without the remote command) that logs into the host as root."""
        h = self.host(host)
        return ["ssh", "-i", str(self.key_path), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5", f"root@{h.address}"]

    # ---- down --------------------------------------------------------------------------
    def down(self) -> list[str]:
        """Kill every process in the fleet's namespaces, delete veths, namespaces and the bridge
        (if this fleet created it). Idempotent; returns what it removed."""
        removed = []
        targets = {}
        for h in self.hosts:
            if _netns_exists(h.name):
                for pid in _netns_pids(h.name):
                    targets[pid] = h.name
            for pid, marker in ((h.sshd_pid, str(self.host_dir(h) / "sshd_config")),
                                (h.supervisord_pid, SUPERVISOR_CONF)):
                # A recorded pid outside the namespace (e.g. netns already deleted): only if it is
                # still the process we started, not a recycled pid.
                if pid and pid not in targets and marker in _cmdline(pid):
                    targets[pid] = h.name
        _terminate(list(targets))
        removed += [f"process {pid} ({name})" for pid, name in sorted(targets.items())]
        for proc in self._procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self._procs = [p for p in self._procs if p.returncode is None]
        removed += _close_control_masters(self.control_dir)
        if self.dir not in self.control_dir.parents and self.control_dir.is_dir():
            shutil.rmtree(self.control_dir, ignore_errors=True)  # the short-path fallback in /tmp
        # Deleting an empty namespace deletes its veth pair too, in one batch in the kernel:
        # much faster than `ip link del` one by one. Those still there after a while go by hand.
        gone = [h for h in self.hosts if _netns_exists(h.name)]
        veths_before = [h.veth for h in self.hosts if _link_exists(h.veth)]
        if gone:
            _run(["ip", "-force", "-batch", "-"], input="".join(f"netns del {h.name}\n" for h in gone),
                 check=False)
            removed += [f"netns {h.name}" for h in gone]
        veths = [h.veth for h in self.hosts if _link_exists(h.veth)]
        deadline = time.monotonic() + 3
        while veths and time.monotonic() < deadline:
            time.sleep(0.05)
            veths = [v for v in veths if _link_exists(v)]
        if veths:
            _run(["ip", "-force", "-batch", "-"], input="".join(f"link del {v}\n" for v in veths), check=False)
        removed += [f"veth {v}" for v in veths_before]
        if self.bridge_created and _link_exists(self.bridge):
            _run(["ip", "link", "del", self.bridge], check=False)
            removed.append(f"bridge {self.bridge}")
        leftovers = [h.name for h in self.hosts if _netns_exists(h.name)] + \
                    [name for name in [h.veth for h in self.hosts] + ([self.bridge] if self.bridge_created else [])
                     if _link_exists(name)]
        if self.state_file.parent.exists():
            self.state = "down" if not leftovers else "down-failed"
            self.save()
        if leftovers:
            raise FleetError(f"teardown left {', '.join(leftovers)} behind")
        return removed


KINDS = ("supervisord", "systemd")


def fleet_class(kind: str) -> type:
    """The Fleet class of a host kind: supervisord (this file) or systemd (tools/nspawn_fleet.py)."""
    if kind == "supervisord":
        return Fleet
    if kind == "systemd":
        from tools.nspawn_fleet import NspawnFleet  # pylint: disable=import-outside-toplevel  # cycle
        return NspawnFleet
    raise FleetError(f"host kind {kind!r} must be one of {', '.join(KINDS)}")


def make_fleet(directory: str | Path, *, kind: str = "supervisord", **options) -> Fleet:
    """A new fleet whose hosts are of that kind (options as for Fleet)."""
    return fleet_class(kind)(directory, **options)


def _networks_in_use() -> list[tuple[str, ipaddress.IPv4Network]]:
    """(interface, network) of every IPv4 address and route on this machine."""
    found = []
    for line in _run(["ip", "-4", "-o", "addr", "show"]).stdout.splitlines():
        fields = line.split()
        if "inet" in fields:
            found.append((fields[1], ipaddress.ip_interface(fields[fields.index("inet") + 1]).network))
    for line in _run(["ip", "-4", "route", "show"]).stdout.splitlines():
        fields = line.split()
        if fields and fields[0] != "default" and "dev" in fields:
            found.append((fields[fields.index("dev") + 1], ipaddress.ip_network(fields[0], strict=False)))
    return found


def free_subnet(base: str = "10.231.0.0/16") -> str:
    """A random /24 in `base` that no address or route on this machine overlaps."""
    used = [net for dummy, net in _networks_in_use()]
    free = [str(net) for net in ipaddress.ip_network(base).subnets(new_prefix=24)
            if not any(net.overlaps(u) for u in used)]
    if not free:
        raise FleetError(f"no free /24 left in {base}")
    return secrets.choice(free)


@contextlib.contextmanager
def machine_lock():
    """One fleet at a time on this machine between choosing names and taking them."""
    MACHINE_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(MACHINE_LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _names_free(prefix: str) -> bool:
    taken = set(os.listdir("/sys/class/net")) | (set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set())
    return not any(name.startswith(prefix) for name in taken)


def unique_prefix(stem: str = "rk") -> str:
    """stem plus random letters, used by no bridge, veth or namespace on this machine."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    for dummy in range(100):
        prefix = stem + "".join(secrets.choice(alphabet) for dummy in range(6 - len(stem)))
        if _names_free(prefix):
            return prefix
    raise FleetError(f"found no unused prefix starting with {stem!r}")


def down_stale(prefix: str) -> list[str]:
    """Remove what fleets with this prefix left behind after their owner died (a killed test run):
    fleets whose sshd still names their directory go down through it; the rest, namespaces
    PREFIX-hostNN (with every process in them), veths PREFIXvNN and the bridge PREFIXbr0, by name,
    and a systemd fleet's cgroups. Only for a prefix no live fleet uses."""
    if not PREFIX_RE.match(prefix):
        raise FleetError(f"prefix {prefix!r} must be 1-6 lower-case letters or digits, starting with a letter")
    _preflight()
    removed = []

    def namespaces():
        names = os.listdir("/run/netns") if os.path.isdir("/run/netns") else []
        return sorted(n for n in names if re.fullmatch(rf"{prefix}-host\d+", n))

    for directory in sorted({d for d in map(_owner_dir, namespaces()) if d}):
        try:
            removed += Fleet.load(directory).down()
        except (FleetError, KeyError):
            pass  # an unreadable record: the by-name pass below still removes it all
    names = namespaces()
    pids = [pid for ns in names for pid in _netns_pids(ns)]
    _terminate(pids)
    removed += [f"process {pid}" for pid in pids]
    if names:
        _run(["ip", "-force", "-batch", "-"], input="".join(f"netns del {n}\n" for n in names), check=False)
        removed += [f"netns {n}" for n in names]
    links = sorted(n for n in os.listdir("/sys/class/net") if re.fullmatch(rf"{prefix}v\d+|{prefix}br0", n))
    if links:
        _run(["ip", "-force", "-batch", "-"], input="".join(f"link del {n}\n" for n in links), check=False)
        removed += [f"link {n}" for n in links]
    from tools import nspawn_fleet  # pylint: disable=import-outside-toplevel  # cycle
    return removed + nspawn_fleet.down_stale(prefix)


def _teardown_hint(prefix: str, namespace: str | None = None) -> str:
    """How to remove the fleet that holds this prefix: through its directory if its sshd names one."""
    owner = _owner_dir(namespace or f"{prefix}-host01")
    return f"`fleet.py down --dir {owner}`" if owner else f"`fleet.py down --stale {prefix}` if that fleet is gone"


def _owner_dir(namespace: str) -> str | None:
    """The directory of the fleet whose sshd runs in this namespace, from its command line."""
    for pid in _netns_pids(namespace):
        match = re.search(r" -f (\S+)/hosts/[^/ ]+/sshd_config", _cmdline(pid))
        if match and Path(match.group(1), "fleet.json").exists():
            return match.group(1)
    return None


def write_credentials_file(path: Path, creds: dict, profile: str, uid: int, gid: int) -> None:
    """An AWS shared credentials file, mode 0600, owned by the app user, never world-readable."""
    text = (f"[{profile}]\naws_access_key_id = {creds['access_key_id']}\n"
            f"aws_secret_access_key = {creds['secret_access_key']}\n")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchown(fd, uid, gid)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    tmp.replace(path)


def _ensure_user(name: str) -> tuple[int, int]:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        _run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
              "--shell", "/usr/sbin/nologin", name])
        entry = pwd.getpwnam(name)
    return entry.pw_uid, entry.pw_gid


_PREFLIGHT_OK = False


def _preflight() -> None:
    global _PREFLIGHT_OK
    if _PREFLIGHT_OK:
        return
    if os.geteuid() != 0:
        raise FleetError("the fleet needs root (network namespaces, mounts, sshd)")
    missing = sorted({pkg for tool, pkg in REQUIRED_TOOLS.items()
                      if not (os.access(tool, os.X_OK) if tool.startswith("/") else shutil.which(tool))})
    if missing:
        raise FleetError(f"missing packages {', '.join(missing)}: run tools/install_system_deps.sh")
    probe = subprocess.run(["/usr/bin/python3", "-c", "import boto3"], capture_output=True, check=False)
    if probe.returncode != 0:
        raise FleetError("/usr/bin/python3 cannot import boto3 (the demo app needs it): "
                         "run tools/install_system_deps.sh")
    _PREFLIGHT_OK = True


def _netns_pids(name: str) -> list[int]:
    proc = _run(["ip", "netns", "pids", name], check=False)
    return [int(p) for p in proc.stdout.split() if p.isdigit()]


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _terminate(pids: list[int], grace: float = 0.5) -> None:
    """SIGTERM, then SIGKILL what is left after `grace` seconds (supervisord alone takes a
    second or two to stop its program: nothing on a fleet host needs a clean shutdown)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_pid_alive(p) for p in pids):
            time.sleep(0.05)
        pids = [p for p in pids if _pid_alive(p)]
        if not pids:
            return


def _close_control_masters(control_dir: Path) -> list[str]:
    closed = []
    if not control_dir.is_dir():
        return closed
    for sock in control_dir.iterdir():
        if sock.is_socket():
            subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "fleet"],
                           capture_output=True, timeout=10, check=False)
            sock.unlink(missing_ok=True)
            closed.append(f"ssh control master {sock.name}")
    return closed


def _to_yaml(data: dict) -> str:
    try:
        import yaml
    except ImportError:  # JSON is YAML too
        return json.dumps(data, indent=2) + "\n"
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


# ---- command line ---------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fleet.py", description=__doc__.split("\n\n", maxsplit=1)[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, naming=True):
        sp.add_argument("--dir", required=True, help="the fleet's directory (keys, configs, inventory)")
        if naming:
            sp.add_argument("--prefix",
                            help="names: PREFIXbr0 bridge, PREFIX-hostNN namespaces, PREFIXvNN veths "
                                 "(default rk; auto: an unused random one)")
            sp.add_argument("--subnet",
                            help="bridge gets .1, hostNN gets .(10+NN) (default 10.231.0.0/24; "
                                 "auto: a free /24 in 10.231.0.0/16)")

    b = sub.add_parser("bridge", help="create only the bridge; prints its address")
    common(b)
    u = sub.add_parser("up", help="bring up N hosts and write DIR/inventory.yml and DIR/fleet.json")
    u.add_argument("count", type=int, metavar="N")
    common(u)
    u.add_argument("--endpoint-url", required=True,
                   help="the IAM/STS endpoint the apps call (reachable from the bridge, e.g. http://10.231.0.1:PORT)")
    u.add_argument("--initial-credentials", required=True, metavar="FILE",
                   help="the apps' first key: JSON with access_key_id and secret_access_key, "
                        "or an AWS credentials file (see --profile)")
    u.add_argument("--profile", default="default", help="credentials profile to read and write (default default)")
    u.add_argument("--region", default="us-east-1")
    u.add_argument("--app-user", default="rekeyapp", help="the unprivileged user the app runs as")
    u.add_argument("--app-port", type=int, default=8080)
    u.add_argument("--timeout", type=float, default=30, help="seconds to wait for sshd and the apps")
    u.add_argument("--kind", choices=KINDS, default="supervisord",
                   help="the hosts: the app under supervisord (default), or systemd containers "
                        "(systemd-nspawn, tools/nspawn_fleet.py)")
    d = sub.add_parser("down", help="tear the fleet in DIR down (idempotent)")
    which = d.add_mutually_exclusive_group(required=True)
    which.add_argument("--dir", help="the fleet's directory")
    which.add_argument("--stale", metavar="PREFIX",
                       help="remove by name what dead fleets with this prefix left (their directory lost)")
    e = sub.add_parser("exec", help="run a shell command inside a host's namespaces")
    common(e, naming=False)
    e.add_argument("host", help="host name (rk-host01) or number (1)")
    e.add_argument("cmd", nargs=argparse.REMAINDER, help="the command (after --)")
    return p


def _open(args) -> Fleet:
    """The fleet recorded in DIR if any (and not down: `bridge` then `up`), else a new one."""
    if (Path(args.dir) / "fleet.json").exists():
        fleet = Fleet.load(args.dir)
        if fleet.state != "down":
            for given, recorded, flag in ((args.prefix, fleet.prefix, "--prefix"),
                                          (args.subnet, fleet.subnet, "--subnet")):
                if given not in (None, "auto", recorded):
                    raise FleetError(f"{args.dir} holds a fleet with {flag} {recorded}, not {given}; "
                                     "run down first or leave the option out")
            return fleet
    return make_fleet(args.dir, kind=getattr(args, "kind", "supervisord"),
                      prefix=args.prefix or "rk", subnet=args.subnet or "10.231.0.0/24",
                      app_user=getattr(args, "app_user", "rekeyapp"), app_port=getattr(args, "app_port", 8080))


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        if args.command == "bridge":
            print(_open(args).bridge_up())
        elif args.command == "up":
            started = time.monotonic()
            fleet = _open(args).up(args.count, endpoint_url=args.endpoint_url,
                                   credentials=args.initial_credentials, region=args.region,
                                   profile=args.profile, timeout=args.timeout)
            phases = ", ".join(f"{k} {v:.2f}s" for k, v in fleet.timings.items())
            print(f"fleet up: {len(fleet.hosts)} hosts in {time.monotonic() - started:.2f}s ({phases}); "
                  f"inventory {fleet.inventory_path}")
        elif args.command == "down" and args.stale:
            removed = down_stale(args.stale)
            print(f"removed {len(removed)} items left by fleets with prefix {args.stale}")
        elif args.command == "down":
            if not (Path(args.dir) / "fleet.json").exists():
                print(f"no fleet recorded in {args.dir}; nothing to do")
                return 0
            started = time.monotonic()
            removed = Fleet.load(args.dir).down()
            print(f"fleet down in {time.monotonic() - started:.2f}s: removed {len(removed)} items")
        elif args.command == "exec":
            cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
            if not cmd:
                raise FleetError("exec needs a command after the host name")
            proc = Fleet.load(args.dir).exec(args.host, shlex.join(cmd) if len(cmd) > 1 else cmd[0],
                                             check=False)
            sys.stdout.write(proc.stdout)
            sys.stderr.write(proc.stderr)
            return proc.returncode
    except FleetError as exc:
        print(f"fleet.py {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"fleet.py {args.command}: interrupted; cleaned up what it had started", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    # As tools.fleet, the module tools/nspawn_fleet.py imports: one FleetError, one Fleet.
    sys.path.insert(0, str(TOOLS.parent))
    from tools.fleet import main as package_main  # pylint: disable=import-self
    sys.exit(package_main())
