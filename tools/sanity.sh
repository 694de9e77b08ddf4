#!/usr/bin/env bash
# ansible-test sanity, offline: usage tools/sanity.sh VENV
# ansible-test needs the collection under ansible_collections/rekey/aws and bootstraps pip in its
# own virtual environments from a download we cannot reach; give it tools/get_pip_offline.py.
set -euo pipefail
venv=$(cd "$1" && pwd)
repo=$(cd "$(dirname "$0")/.." && pwd)
python="$venv/bin/python"
pyver=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
test_pkg=$("$python" -c 'import ansible_test, os; print(os.path.dirname(ansible_test.__file__))')
pip_version=$(sed -n "s/^ *pip='\([0-9.]*\)',*$/\1/p" "$test_pkg/_internal/python_requirements.py" | head -n1)
[ -n "$pip_version" ] || { echo "sanity.sh: cannot find the pip version ansible-test wants in $test_pkg" >&2; exit 1; }
mkdir -p "$HOME/.ansible/test/cache"
cp "$repo/tools/get_pip_offline.py" "$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"

# A tree of its own per run, so that runs side by side do not delete each other's.
mkdir -p "$repo/.build"
root=$(mktemp -d "$repo/.build/sanity-$(basename "$venv")-XXXXXX")
trap 'rm -rf "$root"' EXIT
build="$root/ansible_collections/rekey/aws"
mkdir -p "$build"
(cd "$repo" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$build/")
cd "$build"
git init -q . && git add -A >/dev/null   # ansible-test lists a collection's files through git
"$venv/bin/ansible-test" sanity --python "$pyver" --color no "${@:2}"
