#!/usr/bin/env bash
# The collection as users get it: usage tools/check_tarball.sh [--install-to DIR] [OUT_DIR]
# (OUT_DIR default .build/tarball)
# 1. builds the tarball from the working tree and lists it: fails, naming the path, when anything
#    galaxy.yml's build_ignore should leave out is inside (venvs, caches, tools/, tests/, the
#    molecule scenario, ...), or when a file the collection needs is missing;
# 2. installs it with `ansible-galaxy collection install --offline` into a clean collections path
#    and runs ansible-doc, with ANSIBLE_COLLECTIONS_PATH set to that path only, for every module in
#    plugins/modules, every lookup plugin and the role: each must render, from the installed copy.
# Everything is written under OUT_DIR/run-XXXXXX (ANSIBLE_HOME too), removed when the check passes.
# With --install-to DIR, step 2 installs into DIR (an empty or new directory, kept) and stops there:
# tests/integration/test_awx_runner.py runs a rotation from that installed copy.
# VENV (default .venv) holds ansible-galaxy and ansible-doc.
set -euo pipefail
me=check_tarball
install_to=
if [ "${1:-}" = "--install-to" ]; then
    install_to=${2:?--install-to needs a directory}
    shift 2
fi
out=${1:-.build/tarball}
# shellcheck source=tools/check_common.sh
. "$(dirname "$0")/check_common.sh"

collections=${install_to:-$work/collections}
mkdir -p "$collections"
[ -z "$(ls -A "$collections")" ] || fail "$collections is not empty: the collections path must be clean"
collections=$(cd "$collections" && pwd)
export ANSIBLE_COLLECTIONS_PATH="$collections"

# 1. Build from the working tree and list the tarball.
run build.log "$venv/bin/ansible-galaxy" collection build --output-path "$work/build" "$repo"
tarballs=("$work"/build/*.tar.gz)
if [ "${#tarballs[@]}" -ne 1 ] || [ ! -f "${tarballs[0]}" ]; then
    fail "ansible-galaxy collection build made no tarball (or more than one) in $work/build"
fi
tarball=${tarballs[0]}
tar -tzf "$tarball" | sed 's#^\./##; s#/$##' | sort > "$work/contents.txt"

# name|extended regular expression on the paths inside the tarball
forbidden=(
    'a virtual environment (.venv*)|(^|/)\.venv[^/]*(/|$)'
    'a cache or tool state directory|(^|/)(\.ansible|\.cache|\.pytest_cache|\.mypy_cache|\.hypothesis|__pycache__|\.tox|\.git)(/|$)'
    'build or demo output|^(\.build|demo-out)(/|$)|\.tar\.gz$|\.pyc$|\.retry$'
    'the test and demo harness (tools/, bench/, requirements/, CI, make, lint and pytest configuration)|^(tools|bench|requirements|\.ci)(/|$)|^(Makefile|pytest\.ini|\.gitignore|\.ansible-lint)$'
    'tests that need tools/ (tests/, the molecule scenario)|^tests(/|$)|^roles/[^/]+/molecule(/|$)'
)
found=0
for rule in "${forbidden[@]}"; do
    name=${rule%%|*}
    regex=${rule#*|}
    if grep -E "$regex" "$work/contents.txt" > "$work/match.txt"; then
        found=1
        echo "$me: the tarball contains $name: $(wc -l < "$work/match.txt") paths, e.g." >&2
        head -n 5 "$work/match.txt" | sed 's/^/    /' >&2
    fi
done
[ "$found" -eq 0 ] || fail "$(basename "$tarball") ships what galaxy.yml's build_ignore must leave out (see above)"

# What the installed collection needs: too broad a build_ignore must fail too.
mapfile -t modules < <(cd "$repo/plugins/modules" && for f in *.py; do echo "${f%.py}"; done)
mapfile -t lookups < <(cd "$repo/plugins/lookup" && for f in *.py; do echo "${f%.py}"; done)
mapfile -t roles < <(cd "$repo/roles" && for d in */; do echo "${d%/}"; done)
needed=(MANIFEST.json FILES.json README.md meta/runtime.yml meta/execution-environment.yml
        requirements.txt bindep.txt playbooks/rotate.yml playbooks/audit.yml)
for m in "${modules[@]}"; do needed+=("plugins/modules/$m.py"); done
for r in "${roles[@]}"; do needed+=("roles/$r/meta/argument_specs.yml" "roles/$r/tasks/main.yml"); done
for path in "${needed[@]}"; do
    grep -qxF "$path" "$work/contents.txt" || fail "$(basename "$tarball") lacks $path (too broad a build_ignore in galaxy.yml?)"
done
echo "$me: $(basename "$tarball"): $(wc -l < "$work/contents.txt") entries, nothing build_ignore should leave out"

# 2. Install into a clean collections path; ansible-doc from there only.
run install.log "$venv/bin/ansible-galaxy" collection install --offline -p "$collections" "$tarball"
installed="$collections/ansible_collections/rekey/aws"
[ -f "$installed/MANIFEST.json" ] || fail "ansible-galaxy installed nothing at $installed"
if [ -n "$install_to" ]; then
    echo "$me: $(basename "$tarball") installed at $installed"
    exit 0
fi

cd "$work"   # not the checkout: nothing there may be found by accident
for m in "${modules[@]}"; do run "doc-$m.txt" "$venv/bin/ansible-doc" -t module "rekey.aws.$m"; done
for l in "${lookups[@]}"; do run "doc-lookup-$l.txt" "$venv/bin/ansible-doc" -t lookup "rekey.aws.$l"; done
for r in "${roles[@]}"; do run "doc-role-$r.txt" "$venv/bin/ansible-doc" -t role "rekey.aws.$r"; done

# ansible-doc skips a plugin it cannot find with a warning only: check that each one came, from $installed.
run doc-modules.json "$venv/bin/ansible-doc" -t module --json "${modules[@]/#/rekey.aws.}"
"$venv/bin/python" - "$work/doc-modules.json" "$installed" "${modules[@]}" <<'EOF' || fail "ansible-doc did not document every module from the installed tarball (see above)"
import json
import os
import sys

path, installed, modules = sys.argv[1], sys.argv[2], sys.argv[3:]
with open(path) as f:
    docs = json.load(f)
bad = []
for module in modules:
    doc = docs.get("rekey.aws." + module, {}).get("doc") or {}
    filename = doc.get("filename") or ""
    if not filename.startswith(installed + os.sep):
        bad.append("rekey.aws.%s: %s" % (module, filename or "not found"))
for line in bad:
    print("check_tarball: " + line, file=sys.stderr)
sys.exit(1 if bad else 0)
EOF
echo "$me: ansible-doc renders, from the installed tarball only: ${modules[*]}; lookup ${lookups[*]}; role ${roles[*]}"
