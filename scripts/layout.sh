#!/usr/bin/env bash
# `make layout`: regenerates shim/layout/symbol-order, the order in which `make build` links
# the shim's functions: those a container's life runs first, together, the rest after.
#
# Each shim maps the pages of its binary that it executes, and the kernel maps them in 64 KiB
# windows around each fault; with the functions a shim runs spread over the whole binary,
# nearly all of its code ended up resident in every shim. Packed together, they are a few
# windows. The order comes from a shim built with function-entry coverage
# (src/layout_profile.rs) running containers through a private containerd: hello runs,
# a detached guest that is listed, measured, paused, resumed, killed and deleted, a guest that
# faults, one the filter kills, a refused image; then the real shim refines it under a
# page-fault trace (see the end of this file). Rerun it when the shim's code or its dependencies change much: symbols the file
# names that no longer exist are skipped, new functions go after the listed ones.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cargo="${CARGO:-cargo}"
target=x86_64-unknown-linux-gnu
layout_dir="$repo/target/layout"
bin="$layout_dir/bin"
guests="$repo/target/guests/release"
out="$repo/shim/layout/symbol-order"
base="$(mktemp -d /tmp/nabla-layout.XXXXXX)"
ns="nabla-layout"
# shellcheck source=scripts/private-containerd.sh
. "$repo/scripts/private-containerd.sh"
trap 'set +e; ctr task kill -s SIGKILL clock >/dev/null 2>&1; ctr container rm clock >/dev/null 2>&1; private_containerd_stop' EXIT

# The images the containers run, into the private containerd.
import_images() {
    image() { "$repo/target/release/nabla-image" --ref "docker.io/library/$1:latest" \
        --file "$guests/$1:/$1" --entrypoint "/$1" -o "$base/$1.tar" >/dev/null; ctr image import "$base/$1.tar" >/dev/null; }
    for g in hello clock fault forbidden; do image "$g"; done
    "$repo/target/release/nabla-image" --ref docker.io/library/not-spt:latest \
        --file /bin/true:/true --entrypoint /true -o "$base/not-spt.tar" >/dev/null
    ctr image import "$base/not-spt.tar" >/dev/null
}

# The containers each profile runs.
lifecycle() {
    local rt=(--runtime io.containerd.nabla.v2)
    for i in 1 2 3; do
        ctr run --rm "${rt[@]}" docker.io/library/hello:latest "hello-$i" /hello layout >/dev/null
    done
    ctr run -d "${rt[@]}" docker.io/library/clock:latest clock /clock tick 100 >/dev/null
    sleep 0.3
    ctr task ps clock >/dev/null
    ctr task metrics clock >/dev/null
    ctr task pause clock
    ctr task resume clock
    ctr task kill -s SIGTERM clock
    for _ in $(seq 50); do
        ctr task delete clock >/dev/null 2>&1 && break
        sleep 0.1
    done
    ctr container rm clock
    # A guest that faults and one the filter kills: their ends are a container's life too.
    for g in fault forbidden; do
        ctr run --rm "${rt[@]}" "docker.io/library/$g:latest" "$g" "/$g" >/dev/null 2>&1 || true
    done
    ctr run --rm "${rt[@]}" docker.io/library/not-spt:latest not-spt /true >/dev/null 2>&1 || true
    for c in fault forbidden not-spt; do ctr container rm "$c" >/dev/null 2>&1 || true; done
}

# The order from the coverage build: profile, symbols, then what they call.
coverage_order() {
    echo "layout: building a shim with function-entry coverage"
    # The coverage flags reach rustc through a wrapper, for the target's crates only (not build
    # scripts or proc-macros): in RUSTFLAGS they would change every symbol's hash, and the names
    # must be those of the shim `make build` links.
    mkdir -p "$layout_dir"
    cat >"$layout_dir/rustc-coverage" <<'EOT'
#!/bin/sh
case " $* " in
*" --target "*) exec "$@" --cfg nabla_layout_profile -C passes=sancov-module \
    -C llvm-args=-sanitizer-coverage-level=1 -C llvm-args=-sanitizer-coverage-trace-pc-guard \
    -C llvm-args=-sanitizer-coverage-pc-table ;;
*) exec "$@" ;;
esac
EOT
    chmod +x "$layout_dir/rustc-coverage"
    RUSTC_WRAPPER="$layout_dir/rustc-coverage" \
        RUSTFLAGS="-C target-feature=+crt-static -C link-arg=-Wl,-z,pack-relative-relocs" \
        "$cargo" build --profile dist -p containerd-shim-nabla --target "$target" --target-dir "$layout_dir"
    mkdir -p "$bin"
    install -m 0755 "$layout_dir/$target/dist/containerd-shim-nabla-v2" "$bin/"
    install -m 0755 "$repo/target/static/$target/dist/nabla-tender" "$bin/"

    mkdir -p "$base/profile"
    export NABLA_LAYOUT_DIR="$base/profile"
    private_containerd_start
    import_images

    echo "layout: running containers"
    lifecycle
    kill "$ctrd_pid"; wait "$ctrd_pid" 2>/dev/null || true; ctrd_pid=""
    # The shims exit once their last container is gone; wait for their profiles.
    sleep 1

    cat "$base"/profile/shim.* >/dev/null
    echo "layout: $(ls "$base"/profile | wc -l) shim processes profiled"
    # Entry offsets (sorted, 16 hex digits) merged with the symbol table: each offset takes the
    # function symbol at or before it.
    {
        nm --defined-only "$bin/containerd-shim-nabla-v2" | awk '$2 ~ /^[tTwW]$/ {print $1, 0, $3}'
        sort -u "$base"/profile/shim.* | awk '{print $1, 1}'
    } | LC_ALL=C sort -k1,1 -k2,2 | awk '
        $2 == 0 { sym = $3; next }
        sym != "" && !seen[sym]++ { print sym }
    ' >"$base/hot"
    # Named as in the shim `make build` links: LTO numbers the copies of a function several
    # crates instantiate (`name.12`) differently in the two builds, so names are matched without
    # the number, and every copy is listed.
    mkdir -p "$(dirname "$out")"
    nm --defined-only "$repo/target/static/$target/dist/containerd-shim-nabla-v2" |
        awk '$2 ~ /^[tTwW]$/ {print $3}' >"$base/dist"
    awk '
        function stem(s) { sub(/\.[0-9]+$/, "", s); return s }
        NR == FNR { if (!(stem($0) in rank)) rank[stem($0)] = FNR; next }
        stem($0) in rank { print rank[stem($0)], $0 }
    ' "$base/hot" "$base/dist" | sort -n -k1,1 | awk '!seen[$2]++ {print $2}' >"$out.new"
    # The standard library's precompiled functions and libc carry no coverage guards, nor does
    # what runs before main (start-up, relocation resolvers, initialisers) or starts a thread.
    # They follow: the start-up entry points, then what the listed functions call directly or
    # through other unguarded functions, short of the panic and error paths. A function the
    # profile saw also brings in each function it calls: the two builds fold identical
    # functions together under different names.
    calls() {
        objdump -d --no-show-raw-insn "$1" | awk '
            /^[0-9a-f]+ <.*>:$/ { f = substr($2, 2, length($2) - 3); next }
            $2 ~ /^(call|jmp)$/ && $4 ~ /^</ {
                t = substr($4, 2, length($4) - 2); sub(/\+0x[0-9a-f]+$/, "", t)
                if (t != f) print f, t
            }'
    }
    calls "$bin/containerd-shim-nabla-v2" | awk '$2 == "__sanitizer_cov_trace_pc_guard" {print $1}' |
        sort -u >"$base/instrumented"
    calls "$repo/target/static/$target/dist/containerd-shim-nabla-v2" | sort -u >"$base/calls"
    grep -E '^(_start|__libc_start_main.*|.*_ifunc|.*init_wrapper|.*thread_start.*)$' "$base/dist" >>"$out.new" || true
    awk '
        function stem(s) { sub(/\.[0-9]+$/, "", s); return s }
        FILENAME == ARGV[1] { guarded[stem($0)] = 1; next }
        FILENAME == ARGV[2] { callees[$1] = callees[$1] " " $2; next }
        !($0 in have) { order[++n] = $0; have[$0] = 1; seen[$0] = 1 }
        END {
            for (i = 1; i <= n; i++) {
                f = order[i]
                print f
                k = split(callees[f], ts, " ")
                for (j = 1; j <= k; j++) {
                    t = ts[j]
                    if (t in have || (!(f in seen) && stem(t) in guarded)) continue
                    if (t ~ /panic|unwrap_failed|expect_failed|_fail|handle_error|alloc_error|abort|backtrace|__libc_fatal|__assert/) continue
                    have[t] = 1; order[++n] = t
                }
            }
        }
    ' "$base/instrumented" "$base/calls" "$out.new" >"$out"
    rm "$out.new"
    echo "layout: $(wc -l <"$base/hot") functions ran, $(wc -l <"$out") symbols in $out"
}

# NABLA_LAYOUT_REFINE_ONLY=1 keeps the current list and only refines it (the last phase):
# enough after a small change to the shim.
if [ -z "${NABLA_LAYOUT_REFINE_ONLY:-}" ]; then
    coverage_order
fi

# The instrumented shim is not quite the shim `make build` links: LTO inlines differently with
# the guards in, and libc's string functions are reached through ifunc pointers that objdump
# cannot follow. So the real shim, linked in this order, then runs the same containers under
# a page-fault trace: each function it first fetches code from on a page no listed function
# brought in joins the end of the list, and the shim is linked again, until no such function
# is left (at most eight rounds). Needs perf; without it the list is the profile's alone.
if ! command -v perf >/dev/null || ! perf stat -e page-faults true >/dev/null 2>&1; then
    echo "layout: perf cannot count page faults here: the list is the coverage profile's alone" >&2
    exit 0
fi
bin="$repo/target/static/$target/dist"
unset NABLA_LAYOUT_DIR
private_containerd_start
if [ -n "${NABLA_LAYOUT_REFINE_ONLY:-}" ]; then import_images; fi
for round in 1 2 3 4 5 6 7 8; do
    make -C "$repo" --no-print-directory build CARGO="$cargo" >/dev/null
    perf record -q -e page-faults -c 1 -d -a -o "$base/faults.data" >/dev/null 2>&1 &
    perf_pid=$!
    sleep 1
    lifecycle
    sleep 1
    kill -INT "$perf_pid"
    wait "$perf_pid" || true
    # Instruction fetches are the faults at the faulting instruction's own address.
    perf script -i "$base/faults.data" --no-demangle -F comm,ip,sym,addr 2>/dev/null |
        awk '$1 == "containerd-shim" && $2 == $4 && $5 != "[unknown]" {print $5}' |
        sort -u >"$base/fetched"
    grep -vxF -f "$out" "$base/fetched" >"$base/new" || true
    if [ ! -s "$base/new" ]; then
        echo "layout: round $round: every code fault is in a listed function"
        break
    fi
    cat "$base/new" >>"$out"
    echo "layout: round $round: $(wc -l <"$base/new") more functions: $(tr '\n' ' ' <"$base/new" | cut -c1-200)"
done
make -C "$repo" --no-print-directory build CARGO="$cargo" >/dev/null
echo "layout: $(wc -l <"$out") symbols in $out"
