#!/usr/bin/env bash
# Installs what the tests, the demo and the benchmarks need on a Debian bookworm machine, as
# root. Idempotent: a second run only checks.
#
# From Debian bookworm: runc (the baseline runtime), the CNI plugins, iproute2, ethtool, ping,
# gcc (baseline programs), util-linux (losetup), strace (benchmarks) and protoc (the CRI client
# the Kubernetes tests build).
# containerd 2.x is not in bookworm: Debian sid's package is fetched with a private apt
# configuration (the system's sources are left alone) and unpacked into .deps/containerd/.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
deps="$repo/.deps"
ctrd="$deps/containerd"

log() { echo "install-deps: $*"; }

if [ "$(id -u)" != 0 ]; then
    echo "install-deps: run as root (the tests create network namespaces, taps and a containerd)" >&2
    exit 1
fi

# apt verifies archives as its unprivileged sandbox user, which needs a usable /dev/null.
if [ ! -c /dev/null ] || [ "$(stat -c %a /dev/null)" != 666 ]; then
    echo "install-deps: /dev/null is not a world-writable character device ($(stat -c '%F, mode %a' /dev/null 2>/dev/null)); apt cannot verify archives. Restore it with: rm -f /dev/null && mknod -m 666 /dev/null c 1 3" >&2
    exit 1
fi

# --- Debian packages ---------------------------------------------------------------------
# command or file that proves each package is there
declare -A want=(
    [runc]=/usr/sbin/runc
    [containernetworking-plugins]=/usr/lib/cni/bridge
    [iproute2]=/usr/bin/ip
    [ethtool]=/usr/sbin/ethtool
    [iputils-ping]=/usr/bin/ping
    [gcc]=/usr/bin/gcc
    [libc6-dev]=/usr/include/stdio.h
    [util-linux]=/usr/sbin/losetup
    [strace]=/usr/bin/strace
    [protobuf-compiler]=/usr/bin/protoc
    [ca-certificates]=/etc/ssl/certs/ca-certificates.crt
)
missing=()
for pkg in "${!want[@]}"; do
    [ -e "${want[$pkg]}" ] || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# CNI's standard configuration directory (`ctr run --cni` reads only there; the tests bind
# their own network over it in a private mount namespace).
install -d /etc/cni/net.d

# --- containerd 2.x from sid ---------------------------------------------------------------
containerd_ok() {
    [ -x "$ctrd/usr/bin/containerd" ] && [ -x "$ctrd/usr/bin/ctr" ] &&
        "$ctrd/usr/bin/containerd" --version 2>/dev/null | grep -qE ' v?2\.'
}

if ! containerd_ok; then
    log "fetching containerd 2.x from Debian sid"
    apt_dir="$deps/apt"
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial"
    # The archive this machine already uses; deb.debian.org if none is configured.
    uri="$(sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1 | awk '{print $1}')"
    if [ -z "$uri" ]; then
        uri="$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)"
    fi
    uri="${uri:-http://deb.debian.org/debian}"
    echo "deb $uri sid main" >"$apt_dir/sources.list"
    apt_opts=(
        -o "Dir::Etc::sourcelist=$apt_dir/sources.list"
        -o "Dir::Etc::sourceparts=-"
        -o "Dir::State::Lists=$apt_dir/lists"
        -o "Dir::Cache::Archives=$apt_dir/archives"
        -o "APT::Get::List-Cleanup=0"
    )
    apt-get "${apt_opts[@]}" update -qq
    (cd "$apt_dir/archives" && apt-get "${apt_opts[@]}" download containerd >/dev/null)
    deb="$(ls -t "$apt_dir"/archives/containerd_*.deb | head -n1)"
    rm -rf "$ctrd.tmp"
    dpkg -x "$deb" "$ctrd.tmp"
    rm -rf "$ctrd"
    mv "$ctrd.tmp" "$ctrd"
    containerd_ok || { echo "install-deps: containerd from $deb does not run here" >&2; exit 1; }
fi

log "containerd: $("$ctrd/usr/bin/containerd" --version)"
log "runc: $(runc --version | head -n1)"
log "all dependencies present"
