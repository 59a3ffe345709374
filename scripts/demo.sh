#!/usr/bin/env bash
# `make demo`: runs a Solo5 unikernel through containerd with the nabla runtime, the way a
# user would with ctr, on a private containerd (own socket and directories) that is stopped
# and removed afterwards. Needs the binaries and guests from `make` and containerd 2.x from
# scripts/install-deps.sh.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
bin="$repo/target/release"
base="$(mktemp -d /tmp/nabla-demo.XXXXXX)"
ns="nabla-demo"
id="demo-$$"
# shellcheck source=scripts/private-containerd.sh
. "$repo/scripts/private-containerd.sh"

cleanup() {
    set +e
    ctr task kill -s SIGKILL "$id" >/dev/null 2>&1
    ctr container rm "$id" >/dev/null 2>&1
    private_containerd_stop
}
trap cleanup EXIT

for f in "$bin/nabla-tender" "$bin/containerd-shim-nabla-v2" "$bin/nabla-image" \
    "$repo/target/guests/release/hello" "$ctrd_bin/containerd"; do
    [ -e "$f" ] || { echo "demo: $f is missing: run \`make\` and scripts/install-deps.sh" >&2; exit 1; }
done

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "Packaging the hello unikernel as an OCI image"
"$bin/nabla-image" --ref docker.io/library/nabla-hello:latest \
    --file "$repo/target/guests/release/hello:/hello" --entrypoint /hello \
    -o "$base/nabla-hello.tar" >/dev/null
echo "nabla-image --ref docker.io/library/nabla-hello:latest --file hello:/hello --entrypoint /hello -o nabla-hello.tar"

step "Starting a private containerd 2.x ($("$ctrd_bin/containerd" --version | awk '{print $3}'))"
private_containerd_start

step "ctr image import nabla-hello.tar"
ctr image import "$base/nabla-hello.tar"

step "ctr run --rm --runtime io.containerd.nabla.v2 docker.io/library/nabla-hello:latest $id /hello Hello from containerd"
set +e
ctr run --rm --runtime io.containerd.nabla.v2 docker.io/library/nabla-hello:latest "$id" /hello Hello from containerd
status=$?
set -e
echo "exit status: $status"
if [ "$status" != 0 ]; then
    echo "demo: the unikernel did not run; containerd's log:" >&2
    tail -n 30 "$base/containerd.log" >&2
    exit 1
fi

step "The same unikernel under nabla-tender alone, with its seccomp filter in force"
"$bin/nabla-tender" "$repo/target/guests/release/hello" one two three | tail -n 2
echo
echo "demo: done (private containerd stopped, its directories removed)"
