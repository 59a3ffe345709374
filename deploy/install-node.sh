#!/usr/bin/env bash
# Installs (or removes) nabla on a Kubernetes node running containerd 2.x.
#
#   install-node.sh install   [--from DIR] [--host-root DIR] [--prefix DIR] [--no-restart]
#                             [--label-node] [--stay]
#   install-node.sh uninstall [--host-root DIR] [--prefix DIR] [--no-restart] [--label-node]
#
# install: copies nabla-tender and containerd-shim-nabla-v2 from --from (default: the static
#   builds of `make build`, target/static/x86_64-unknown-linux-gnu/dist)
# to PREFIX/bin (default /usr/local), writes /etc/nabla/config.toml if there is none, adds the
# CRI runtime `nabla` as a containerd drop-in (/etc/containerd/conf.d/nabla.toml, imported from
# /etc/containerd/config.toml) and restarts containerd. Every step is idempotent.
# uninstall: undoes each of those steps.
#
# --host-root DIR   operate on a host filesystem mounted at DIR (the DaemonSet mounts / at /host)
# --no-restart      leave containerd running (restart it yourself to pick up the runtime)
# --label-node      set (or remove) the label nabla.io/runtime=true on node $NODE_NAME through the
#                   Kubernetes API, with the pod's service account
# --stay            after installing, sleep until terminated (DaemonSet mode)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
action="${1:-}"
shift || true
from="$here/../target/static/x86_64-unknown-linux-gnu/dist"
host=""
prefix="/usr/local"
restart=1
label=0
stay=0
while [ $# -gt 0 ]; do
    case "$1" in
        --from) from="$2"; shift 2 ;;
        --host-root) host="${2%/}"; shift 2 ;;
        --prefix) prefix="$2"; shift 2 ;;
        --no-restart) restart=0; shift ;;
        --label-node) label=1; shift ;;
        --stay) stay=1; shift ;;
        *) echo "install-node.sh: unknown option: $1" >&2; exit 2 ;;
    esac
done

bins=(nabla-tender containerd-shim-nabla-v2)
bindir="$host$prefix/bin"
ctrd_dir="$host/etc/containerd"
ctrd_conf="$ctrd_dir/config.toml"
dropin="$ctrd_dir/conf.d/nabla.toml"
nabla_conf="$host/etc/nabla/config.toml"
import_line='imports = ["conf.d/nabla.toml"]'

log() { echo "install-node.sh: $*"; }

restart_containerd() {
    [ "$restart" = 1 ] || { log "not restarting containerd (--no-restart)"; return 0; }
    if [ -n "$host" ]; then
        # From a privileged pod with hostPID: run systemctl in the host's namespaces.
        nsenter --target 1 --mount --uts --ipc --net --pid -- systemctl restart containerd
    elif command -v systemctl >/dev/null && systemctl is-active --quiet containerd; then
        systemctl restart containerd
    else
        log "containerd is not a running systemd service here; restart it yourself"
        return 0
    fi
    log "containerd restarted"
}

label_node() {
    [ "$label" = 1 ] || return 0
    local value="$1" sa=/var/run/secrets/kubernetes.io/serviceaccount
    : "${NODE_NAME:?--label-node needs NODE_NAME}"
    local body
    if [ "$value" = remove ]; then
        body='{"metadata":{"labels":{"nabla.io/runtime":null}}}'
    else
        body='{"metadata":{"labels":{"nabla.io/runtime":"true"}}}'
    fi
    curl -sSf --cacert "$sa/ca.crt" -H "Authorization: Bearer $(cat "$sa/token")" \
        -H "Content-Type: application/merge-patch+json" -X PATCH --data "$body" \
        "https://${KUBERNETES_SERVICE_HOST}:${KUBERNETES_SERVICE_PORT}/api/v1/nodes/${NODE_NAME}" >/dev/null
    log "node $NODE_NAME label nabla.io/runtime: $value"
}

write_dropin() {
    mkdir -p "$(dirname "$dropin")"
    cat >"$dropin.tmp" <<EOF
# Written by nabla's install-node.sh; removed by \`install-node.sh uninstall\`.
version = 3

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.nabla]
  runtime_type = "io.containerd.nabla.v2"
  runtime_path = "$prefix/bin/containerd-shim-nabla-v2"
  # Annotations the shim understands (memory, block devices, ...) reach it from pods.
  pod_annotations = ["nabla.io/*"]
  container_annotations = ["nabla.io/*"]
  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.nabla.options]
    ConfigPath = "/etc/nabla/config.toml"
EOF
    mv "$dropin.tmp" "$dropin"
}

add_import() {
    mkdir -p "$ctrd_dir"
    if [ ! -f "$ctrd_conf" ]; then
        printf 'version = 3\n%s\n' "$import_line" >"$ctrd_conf"
        return
    fi
    grep -q 'conf.d/nabla.toml' "$ctrd_conf" && return
    if grep -qE '^[[:space:]]*imports[[:space:]]*=' "$ctrd_conf"; then
        # Add our file to the existing list.
        sed -i -E 's|^([[:space:]]*imports[[:space:]]*=[[:space:]]*\[)|\1"conf.d/nabla.toml", |' "$ctrd_conf"
    elif grep -qE '^version[[:space:]]*=' "$ctrd_conf"; then
        sed -i -E "0,/^version[[:space:]]*=.*/s||&\n$import_line|" "$ctrd_conf"
    else
        sed -i "1i $import_line" "$ctrd_conf"
    fi
}

remove_import() {
    [ -f "$ctrd_conf" ] || return 0
    sed -i -E "/^imports = \[\"conf.d\/nabla.toml\"\]$/d; s|\"conf.d/nabla.toml\", ||; s|, \"conf.d/nabla.toml\"||" "$ctrd_conf"
}

case "$action" in
    install)
        for b in "${bins[@]}"; do
            [ -x "$from/$b" ] || { echo "install-node.sh: $from/$b is missing (build with \`make\`)" >&2; exit 1; }
        done
        mkdir -p "$bindir"
        for b in "${bins[@]}"; do
            install -m 0755 "$from/$b" "$bindir/.$b.new"
            mv -f "$bindir/.$b.new" "$bindir/$b"
        done
        log "installed ${bins[*]} into $prefix/bin"
        if [ ! -f "$nabla_conf" ]; then
            mkdir -p "$(dirname "$nabla_conf")"
            if [ -f "$here/config.toml" ]; then
                sed "s|/usr/local/bin/nabla-tender|$prefix/bin/nabla-tender|" "$here/config.toml" >"$nabla_conf"
            else
                printf 'tender_path = "%s/bin/nabla-tender"\n' "$prefix" >"$nabla_conf"
            fi
            log "wrote /etc/nabla/config.toml"
        fi
        write_dropin
        add_import
        log "containerd runtime 'nabla' configured in /etc/containerd/conf.d/nabla.toml"
        restart_containerd
        label_node true
        if [ "$stay" = 1 ]; then
            log "installed; waiting"
            trap 'exit 0' TERM INT
            sleep infinity &
            wait
        fi
        ;;
    uninstall)
        label_node remove || true
        rm -f "$dropin"
        rmdir "$(dirname "$dropin")" 2>/dev/null || true
        remove_import
        for b in "${bins[@]}"; do rm -f "$bindir/$b"; done
        log "removed ${bins[*]} and the containerd drop-in (kept /etc/nabla/config.toml)"
        restart_containerd
        ;;
    *)
        sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2
        exit 2
        ;;
esac
