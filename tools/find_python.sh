#!/usr/bin/env bash
# Prints the Python that .venv and .venv-2.18 are built on: the first candidate that is 3.12 or
# newer (ansible-core 2.20+ needs 3.12; .venv gets requirements/test.txt), else the first that is
# 3.11, such as Debian 12's python3 (ansible-core 2.19 at most: requirements/test-py311.txt).
# The Makefile reads the version and picks the requirements; `make test` and `make demo` print
# one line when they fall back.
#
# REKEY_PYTHON_CANDIDATES (names on PATH or paths, space-separated, in order of preference)
# replaces the default list, e.g. to build a venv as a machine with only /usr/bin/python3.11 would:
#   REKEY_PYTHON_CANDIDATES=/usr/bin/python3.11 make VENV=/tmp/venv-311 unit
set -euo pipefail
if [ -n "${REKEY_PYTHON_CANDIDATES:-}" ]; then
  read -r -a candidates <<<"$REKEY_PYTHON_CANDIDATES"
else
  candidates=(python3.13 python3.12 "$HOME"/.pyenv/versions/3.13*/bin/python3
              "$HOME"/.pyenv/versions/3.12*/bin/python3 python3 python3.11)
fi

fallback=""
for cand in "${candidates[@]}"; do
  path=$(command -v "$cand" 2>/dev/null) || continue
  version=$("$path" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || continue
  case "$version" in
    3.1[2-9] | 3.[2-9][0-9]) echo "$path"; exit 0 ;;
    3.11) [ -n "$fallback" ] || fallback=$path ;;
  esac
done
if [ -n "$fallback" ]; then
  echo "$fallback"; exit 0
fi
echo "find_python: no Python >= 3.11 found (looked at: ${candidates[*]}); ansible-core 2.21 needs 3.12, 2.19 runs on 3.11" >&2
exit 1
