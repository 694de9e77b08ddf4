#!/usr/bin/env bash
# The execution environment files: usage tools/check_ee.sh [OUT_DIR] (default .build/ee)
# 1. builds the collection tarball from the working tree, installs it into a clean collections
#    path and runs `ansible-builder introspect` there: the collection must ask for boto3 and
#    botocore (requirements.txt through meta/execution-environment.yml);
# 2. runs `ansible-builder create` on docs/execution-environment.yml with that tarball next to it
#    (the workflow the file documents). `create` copies only the context; the image build installs
#    the collection (galaxy stage) and then runs the context's introspect.py on it (builder stage)
#    to write the pip requirements. Both steps are replayed here without a container engine, and
#    the requirements they write must install boto3 and botocore.
# Everything is written under OUT_DIR/run-XXXXXX (ANSIBLE_HOME too), removed when the check passes.
# VENV (default .venv) holds ansible-galaxy and ansible-builder.
set -euo pipefail
me=check_ee
out=${1:-.build/ee}
# shellcheck source=tools/check_common.sh
. "$(dirname "$0")/check_common.sh"
example=docs/execution-environment.yml
needs=(boto3 botocore)

# require FILE WHAT: FILE (pip requirements) has a line for each of ${needs[@]} from rekey.aws.
require() {
    local missing=()
    for package in "${needs[@]}"; do
        grep -Eq "^${package}([^[:alnum:]_.-].*)?# from collection rekey\.aws$" "$1" || missing+=("$package")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "--- $1" >&2
        cat "$1" >&2
        fail "$2 does not install ${missing[*]} for rekey.aws (requirements.txt, meta/execution-environment.yml)"
    fi
}


version=$("$venv/bin/python" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["version"])' "$repo/galaxy.yml")
tarball_name="rekey-aws-$version.tar.gz"
for where in "name: collections/$tarball_name" "src: $tarball_name"; do
    grep -qF "$where" "$repo/$example" \
        || fail "$example does not install $tarball_name (galaxy.yml's version $version): expected a line '$where'"
done

# 1. The collection's own metadata, as ansible-builder introspect sees it once installed.
mkdir -p "$work/ee"
run build.log "$venv/bin/ansible-galaxy" collection build --output-path "$work/ee" "$repo"
[ -f "$work/ee/$tarball_name" ] || fail "ansible-galaxy collection build did not make $work/ee/$tarball_name"
run install.log env ANSIBLE_COLLECTIONS_PATH="$work/installed" \
    "$venv/bin/ansible-galaxy" collection install --offline -p "$work/installed" "$work/ee/$tarball_name"
run introspect.log "$venv/bin/ansible-builder" introspect "$work/installed" \
    --write-pip "$work/introspect-requirements.txt" --write-bindep "$work/introspect-bindep.txt"
[ -f "$work/introspect-requirements.txt" ] \
    || fail "ansible-builder introspect found no Python requirement in the installed collection (meta/execution-environment.yml, requirements.txt)"
require "$work/introspect-requirements.txt" "ansible-builder introspect on the installed collection"

# 2. The example execution environment, next to the tarball as its comments tell.
cp "$repo/$example" "$work/ee/execution-environment.yml"
run create.log "$venv/bin/ansible-builder" create -f "$work/ee/execution-environment.yml" \
    -c "$work/context" --output-filename Containerfile
context="$work/context"
[ -f "$context/_build/collections/$tarball_name" ] || fail "the build context lacks _build/collections/$tarball_name ($example: additional_build_files)"
# The replay below is only faithful while the Containerfile still installs _build/requirements.yml
# from /build and runs the context's introspect.py with --write-pip.
for step in '^COPY _build /build$' 'ansible-galaxy collection install .*-r requirements.yml' \
            '/output/scripts/introspect.py introspect .*--write-pip='; do
    grep -q "$step" "$context/Containerfile" \
        || fail "the generated Containerfile has no step matching '$step', which this check replays: update tools/check_ee.sh"
done
# Galaxy stage: WORKDIR /build (the context's _build), the same install command (offline here).
(cd "$context/_build" && run galaxy-stage.log env ANSIBLE_COLLECTIONS_PATH="$work/image-collections" \
    "$venv/bin/ansible-galaxy" collection install --offline -r requirements.yml --collections-path "$work/image-collections")
[ -f "$work/image-collections/ansible_collections/rekey/aws/MANIFEST.json" ] \
    || fail "the build context's requirements.yml does not install rekey.aws ($example: dependencies.galaxy)"
# Builder stage: the context's own introspect script on what the galaxy stage installed.
run builder-stage.log "$venv/bin/python" "$context/_build/scripts/introspect.py" introspect "$work/image-collections" \
    --write-bindep="$work/image-src/bindep.txt" --write-pip="$work/image-src/requirements.txt"
[ -f "$work/image-src/requirements.txt" ] || fail "the image build would write no pip requirements: it would install neither ${needs[*]}"
require "$work/image-src/requirements.txt" "the image built from $example"

echo "$me: $example: ansible-builder create made a context that installs rekey.aws $version and, through it:"
sed 's/^/    /' "$work/image-src/requirements.txt"
