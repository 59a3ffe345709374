# Sourced by scripts/demo.sh and scripts/layout.sh: a private containerd 2.x (its own socket,
# root, state and opt directories under $base) with the nabla runtime on its PATH, and its
# removal. The caller sets `repo`, `bin` (where the shim and the tender are), `base` (a fresh
# directory) and `ns`, and calls private_containerd_stop from its EXIT trap.

ctrd_bin="${NABLA_CONTAINERD_BIN:-$repo/.deps/containerd/usr/bin}"
sock="$base/containerd.sock"
ctrd_pid=""

# Starts containerd and waits until it answers.
private_containerd_start() {
    cat >"$base/config.toml" <<EOT
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
EOT
    (cd "$base" && PATH="$bin:$ctrd_bin:$PATH" exec "$ctrd_bin/containerd" --config "$base/config.toml" \
        >"$base/containerd.log" 2>&1) &
    ctrd_pid=$!
    for _ in $(seq 100); do
        "$ctrd_bin/ctr" --address "$sock" version >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "containerd did not start; its log:" >&2
    tail -n 30 "$base/containerd.log" >&2
    return 1
}

# ctr against the private containerd, in namespace $ns.
ctr() { "$ctrd_bin/ctr" --address "$sock" -n "$ns" "$@"; }

# Stops containerd, unmounts and removes $base, and removes the namespace's parent cgroups.
private_containerd_stop() {
    if [ -n "$ctrd_pid" ]; then
        kill "$ctrd_pid" 2>/dev/null
        wait "$ctrd_pid" 2>/dev/null
    fi
    # Unmount anything left under the directories, deepest first, then remove them.
    awk -v b="$base" '$5 ~ "^"b {print $5}' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l
    rm -rf "$base"
    # The namespace's parent cgroups runtimes create above the container's (empty by now;
    # rmdir refuses one still in use).
    for d in /sys/fs/cgroup/*/"$ns" /sys/fs/cgroup/"$ns"; do
        [ -d "$d" ] && rmdir "$d" 2>/dev/null
    done
    return 0
}
