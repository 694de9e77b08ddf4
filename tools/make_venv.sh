#!/usr/bin/env bash
# Makes a virtual environment: usage tools/make_venv.sh PYTHON DIR (PYTHON from tools/find_python.sh).
# Debian's own Python ships without ensurepip (package pythonX.Y-venv), so `python3 -m venv` fails
# on a fresh Debian 12 whose only Python is 3.11: install that package first (as root, quietly).
set -euo pipefail
python=${1:-}
dir=${2:?usage: tools/make_venv.sh PYTHON DIR}
if [ -z "$python" ]; then
  "$(dirname "$0")/find_python.sh" >/dev/null   # prints why no Python fits, and fails
  exit 1
fi
if ! "$python" -c 'import ensurepip' 2>/dev/null && owner=$(dpkg-query -S "$(readlink -f "$python")" 2>/dev/null); then
  pkg="${owner%%:*}"         # "python3.11-minimal: /usr/bin/python3.11" -> python3.11-venv
  pkg="${pkg%-minimal}-venv"
  if [ "$(id -u)" -ne 0 ]; then
    echo "make_venv: $python has no ensurepip; install $pkg (apt-get install $pkg) or run as root" >&2
    exit 1
  fi
  echo "make_venv: installing $pkg ($python has no ensurepip)" >&2
  log=$(mktemp)
  trap 'rm -f "$log"' EXIT
  if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
         DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$pkg"; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "make_venv: apt-get failed installing $pkg (output above)" >&2
    exit 1
  fi
fi
"$python" -m venv "$dir"
