# shellcheck shell=bash disable=SC2034,SC2154
# (venv is used by the caller; me and out are set by it)
# Sourced by tools/check_*.sh after they set `me` (their name) and `out` (their output dir):
# sets repo, venv and work (OUT_DIR/run-XXXXXX, removed when the check passes, kept when it
# fails), points Ansible at an empty configuration and home under $work, and defines fail and run.
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=$(cd "${VENV:-$repo/.venv}" && pwd)
mkdir -p "$out"
work=$(mktemp -d "$(cd "$out" && pwd)/run-XXXXXX")

cleanup() {
    local rc=$?
    if [ "$rc" -eq 0 ]; then rm -rf "$work"; else echo "$me: FAILED; its files are kept in $work" >&2; fi
}
trap cleanup EXIT

fail() {
    echo "$me: $*" >&2
    exit 1
}

# run LOG CMD...: CMD's output goes to $work/LOG; shown when CMD fails.
run() {
    local log="$work/$1"
    shift
    if ! "$@" > "$log" 2>&1; then
        cat "$log" >&2
        fail "failed: $*"
    fi
}

# No configuration, collection or cache from the machine or the checkout: only what is under $work.
mkdir -p "$work/ansible-home"
: > "$work/ansible.cfg"
export ANSIBLE_CONFIG="$work/ansible.cfg"
export ANSIBLE_HOME="$work/ansible-home"
export ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false
export ANSIBLE_NOCOLOR=1
