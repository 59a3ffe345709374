#!/usr/bin/env bash
# `make demo`: runs a Solo5 unikernel through containerd with the nabla runtime, the way a
# user would with ctr, on a private containerd (own socket and directories) that is stopped
# and removed afterwards. Needs the binaries and guests from `make` and containerd 2.x from
# scripts/install-deps.sh.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
bin="$repo/target/release"
ctrd_bin="${NABLA_CONTAINERD_BIN:-$repo/.deps/containerd/usr/bin}"
base="$(mktemp -d /tmp/nabla-demo.XXXXXX)"
sock="$base/containerd.sock"
ns="nabla-demo"
id="demo-$$"
ctrd_pid=""

cleanup() {
    set +e
    "$ctrd_bin/ctr" --address "$sock" -n "$ns" task kill -s SIGKILL "$id" >/dev/null 2>&1
    "$ctrd_bin/ctr" --address "$sock" -n "$ns" container rm "$id" >/dev/null 2>&1
    if [ -n "$ctrd_pid" ]; then
        kill "$ctrd_pid" 2>/dev/null
        wait "$ctrd_pid" 2>/dev/null
    fi
    # Unmount anything left under the demo's directories, deepest first, then remove them.
    awk -v b="$base" '$5 ~ "^"b {print $5}' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l
    rm -rf "$base"
    # The namespace's parent cgroups runtimes create above the container's (empty by now;
    # rmdir refuses one still in use).
    for d in /sys/fs/cgroup/*/"$ns" /sys/fs/cgroup/"$ns"; do
        [ -d "$d" ] && rmdir "$d" 2>/dev/null
    done
    return 0
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
cat >"$base/config.toml" <<EOF
version = 3
root = "$base/root"
state = "$base/state"
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$base/opt"
[plugins."io.containerd.nri.v1.nri"]
  disable = true
EOF
(cd "$base" && PATH="$bin:$ctrd_bin:$PATH" exec "$ctrd_bin/containerd" --config "$base/config.toml" \
    >"$base/containerd.log" 2>&1) &
ctrd_pid=$!
for _ in $(seq 100); do
    "$ctrd_bin/ctr" --address "$sock" version >/dev/null 2>&1 && break
    sleep 0.1
done

ctr() { "$ctrd_bin/ctr" --address "$sock" -n "$ns" "$@"; }

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
