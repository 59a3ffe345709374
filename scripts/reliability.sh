#!/usr/bin/env bash
# `make reliability`: the long churn and fuzz runs, and each fault and hostile-input case
# repeated, then a table of cases, counts and results. Run as root after `make`.
#
#   NABLA_CHURN_CYCLES   churn cycles (default 500)
#   NABLA_FUZZ_ITERATIONS loader mutations per corpus file (default 30000)
#   NABLA_REPEAT          runs of each fault and hostile-input case (default 5)
#   NABLA_FUZZ_SECONDS    coverage-guided fuzzing of the loader with cargo fuzz (default 120;
#                         cargo-fuzz is installed with cargo if missing; 0 skips it)
set -uo pipefail

cd "$(dirname "$0")/.."
cycles="${NABLA_CHURN_CYCLES:-500}"
fuzz="${NABLA_FUZZ_ITERATIONS:-30000}"
repeat="${NABLA_REPEAT:-5}"
fuzz_seconds="${NABLA_FUZZ_SECONDS:-120}"
cargo="${CARGO:-cargo}"
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
rows=()
failed=0

# run LOG PACKAGE TEST FILTER: one test run, output in $logs/LOG; status 0 if it passed.
run() {
    local log="$logs/$1" pkg="$2" test="$3" filter="$4"
    "$cargo" test --release -q -p "$pkg" --test "$test" -- --exact "$filter" --nocapture \
        >"$log" 2>&1
}

# case DESCRIPTION PACKAGE TEST FILTER: the test $repeat times, one row.
case_row() {
    local what="$1" pkg="$2" test="$3" filter="$4" ok=0 i
    for ((i = 1; i <= repeat; i++)); do
        if run "$filter.$i" "$pkg" "$test" "$filter"; then
            ok=$((ok + 1))
        else
            echo "reliability: $filter failed (run $i):" >&2
            tail -n 30 "$logs/$filter.$i" >&2
        fi
    done
    [ "$ok" = "$repeat" ] || failed=1
    rows+=("| $what | $repeat runs | $ok passed |")
}

echo "reliability: churn, $cycles cycles" >&2
if NABLA_CHURN_CYCLES="$cycles" run churn nabla-integration-tests reliability_churn \
    churn_with_mixed_endings_leaves_nothing_behind; then
    result="all statuses right, nothing left"
else
    result="FAILED"
    failed=1
    tail -n 40 "$logs/churn" >&2
fi
churn="$(grep -o 'churn: .*' "$logs/churn" | head -n1)"
shim="$(grep -o 'group shim: .*' "$logs/churn" | head -n1)"
[ "$result" = FAILED ] || result="${churn#churn: $cycles cycles, }"
[ "$result" = FAILED ] || shim="${shim#group shim: }"
rows+=("| churn: create, start, wait, delete; exit 0, exit 42, fault, seccomp kill, SIGKILL mixed | $cycles cycles | ${result:-FAILED} |")
rows+=("| the shim shared by half the churn (fds / RSS), a guest printing numbered lines throughout | $((cycles / 2)) containers | ${shim:-FAILED} |")

echo "reliability: loader fuzz, $fuzz mutations per corpus file" >&2
if NABLA_FUZZ_ITERATIONS="$fuzz" "$cargo" test --release -q -p nabla-tender --test loader_fuzz \
    -- --nocapture >"$logs/fuzz" 2>&1; then
    result="$(grep -o '[0-9]* mutated inputs.*' "$logs/fuzz" | head -n1)"
else
    result="FAILED"
    failed=1
    tail -n 40 "$logs/fuzz" >&2
fi
rows+=("| loader fuzz: hostile ELF files and manifests | $fuzz per corpus file | $result |")

if [ "$fuzz_seconds" -gt 0 ]; then
    echo "reliability: coverage-guided loader fuzzing (cargo fuzz), $fuzz_seconds s" >&2
    result="FAILED"
    if "$cargo" fuzz --version >/dev/null 2>&1 ||
        "$cargo" install cargo-fuzz --locked >"$logs/cargo-fuzz-install" 2>&1; then
        # On a copy of the corpus: libFuzzer adds every input that finds new coverage.
        cp -r tender/fuzz/corpus/loader "$logs/corpus"
        if (cd tender && "$cargo" fuzz run loader --sanitizer none "$logs/corpus" \
            -- -max_total_time="$fuzz_seconds") >"$logs/libfuzzer" 2>&1; then
            runs="$(grep -o 'Done [0-9]* runs' "$logs/libfuzzer" | tail -n1)"
            result="${runs#Done } without a crash or panic"
        else
            tail -n 40 "$logs/libfuzzer" >&2
        fi
    else
        tail -n 20 "$logs/cargo-fuzz-install" >&2
    fi
    [ "$result" = FAILED ] && failed=1
    rows+=("| loader fuzz, coverage-guided (libFuzzer through cargo fuzz) | $fuzz_seconds s | $result |")
fi

echo "reliability: fault and hostile-input cases, $repeat runs each" >&2
it=nabla-integration-tests
case_row "SIGTERM, SIGKILL through containerd and a SIGKILL of the tender from outside: 143, 137, 137, all cleaned up" \
    $it shim_ctr kill_forwards_sigterm_and_sigkill
case_row "SIGKILL of the shim while a guest runs: containerd's delete action removes everything" \
    $it shim_ctr killed_shim_is_cleaned_up_by_containerd
case_row "containerd restarted twice while one guest prints and another exits: no line lost, exit status kept" \
    $it shim_ctr guests_survive_two_containerd_restarts
case_row "a console reader that stops reading: the guest blocks, the shim's memory stays flat" \
    $it shim_ctr a_stalled_console_reader_blocks_the_guest_not_the_shim
case_row "a disk on a full filesystem: ENOSPC seen by the guest, earlier data intact" \
    $it tender_devices block_on_a_full_filesystem
case_row "bad images (Linux binary, hvt unikernel, 100 MiB of zeros, directory, escaping symlinks, missing) and a 1 MiB command line" \
    $it shim_ctr bad_images_are_refused_at_create_with_nothing_left
case_row "block sources unbound, a directory, a character device, misaligned" \
    $it shim_devices unbound_and_bad_block_sources_are_clear_create_errors
case_row "63 disks bound, then 60 of 63: the missing three named" \
    $it shim_devices sixty_three_disks_all_or_a_clear_list_of_the_missing
case_row "memory limit too small, bad memory annotation, command line over 8191 characters" \
    $it shim_devices user_memory_and_arguments_from_the_spec
case_row "a spec with unknown fields: ignored, as the OCI runtime spec requires" \
    $it shim_devices unknown_spec_fields_are_ignored_as_oci_requires
case_row "NIC guests without a network namespace or interface" \
    $it shim_devices a_nic_needs_a_network_namespace_with_an_interface
case_row "a NIC guest whose new namespace nobody configures: Start fails, nothing left" \
    $it shim_late_network ctr_run_cni_without_network_config_fails_at_start_cleanly

echo
echo "| case | count | result |"
echo "|---|---|---|"
printf '%s\n' "${rows[@]}"
exit "$failed"
