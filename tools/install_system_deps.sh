#!/usr/bin/env bash
# Installs the Debian packages the test fleet (tools/fleet.py) needs, only those missing.
# Idempotent and quiet: runs `apt-get update` only when something must be installed.
#
#   openssh-server  sshd for every fleet host
#   supervisor      supervisord/supervisorctl on every host. From Debian, not PyPI: it lives at
#                   /usr/bin like on a real server, runs under /usr/bin/python3, and the rotate
#                   role's apply commands call it as a system tool (no venv path on the hosts).
#   python3-boto3   the demo app's boto3. The app runs as an unprivileged user, who cannot read
#                   the project venv's interpreter when it lives under /root (pyenv, mode 0700).
#   iproute2        ip netns / veth / bridge
#   util-linux      unshare, nsenter, mount
#   python3         /usr/bin/python3 for Ansible on the fleet hosts
#   mmdebstrap      builds the systemd hosts' Debian rootfs (tools/nspawn_rootfs.py), once, from
#                   the mirror apt already uses
#   systemd-container  systemd-nspawn, which boots systemd as PID 1 in each systemd host
#                   (tools/nspawn_fleet.py)
#   (and the ShellCheck linter, for ansible-test sanity's shell test, skipped without it)
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "install_system_deps: must run as root (apt-get install); running as uid $(id -u)" >&2
  exit 1
fi

packages=(openssh-server supervisor python3-boto3 iproute2 util-linux python3 shellcheck
          mmdebstrap systemd-container)
missing=()
for pkg in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$pkg")
  fi
done
[ "${#missing[@]}" -eq 0 ] && exit 0

echo "install_system_deps: installing ${missing[*]}" >&2
# Without systemd, package scripts would start a global sshd and supervisord on the machine.
# policy-rc.d exit 101 tells invoke-rc.d not to; add one only for this install if none exists.
policy=/usr/sbin/policy-rc.d
added_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 0755 "$policy"
  added_policy=1
fi
log=$(mktemp)
cleanup() { rm -f "$log"; if [ "$added_policy" = 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
# apt chatters on stderr even when all is well (debconf notes): show it only on failure.
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "install_system_deps: apt-get failed installing ${missing[*]} (output above)" >&2
  exit 1
fi
