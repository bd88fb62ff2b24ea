#!/usr/bin/env bash
# Fuzzes every parser that reads client bytes (fuzz/README.md): builds the cargo-fuzz
# targets in fuzz/ and runs each for SECONDS_PER_TARGET seconds, one after the other.
#
#   scripts/fuzz.sh                 # the CI smoke run: 20 s per target
#   scripts/fuzz.sh 600             # a long run: 10 minutes per target
#   scripts/fuzz.sh 60 jwt ranges   # some targets only
#
# Each target starts from its committed seeds (fuzz/seeds/<target>, copied into
# fuzz/corpus/<target>) plus whatever earlier runs left in fuzz/corpus/<target>, which
# libFuzzer grows (git-ignored, so long runs build on each other). A crash, timeout or
# out-of-memory input lands in fuzz/artifacts/<target>/; the script then exits non-zero
# and says how to reproduce and minimise it.
#
# Toolchain: only stable Rust is installed. cargo-fuzz passes nightly-only flags
# (-Zsanitizer=address, -Cpasses=sancov-module, ...), which stable rustc accepts with
# RUSTC_BOOTSTRAP=1. AddressSanitizer works that way (stable ships its runtime), so the
# targets use cargo-fuzz's default: -s address, release build with debug assertions and
# overflow checks, output in fuzz/target.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-20}
shift || true
case "$seconds" in
    '' | *[!0-9]*)
        echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]" >&2
        exit 2
        ;;
esac
if [ $# -gt 0 ]; then
    targets=("$@")
else
    targets=()
    for file in fuzz/fuzz_targets/*.rs; do
        targets+=("$(basename "$file" .rs)")
    done
fi
for target in "${targets[@]}"; do
    if [ ! -f "fuzz/fuzz_targets/$target.rs" ]; then
        echo "fuzz.sh: no target $target (see fuzz/fuzz_targets/)" >&2
        exit 2
    fi
done

# Longest input per target: whole manifests are larger, header values ~16 KiB.
max_len() {
    case "$1" in
        manifests) echo 65536 ;;
        authorization | jwt | token_form) echo 16384 ;;
        names | scopes) echo 8192 ;;
        digests | ranges) echo 1024 ;;
        *) echo 4096 ;;
    esac
}

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1

echo "fuzz.sh: building the fuzz targets (AddressSanitizer, release + debug assertions)"
cargo fuzz build

logs=fuzz/target/fuzz-logs
mkdir -p "$logs"
rows=()
failed=()
for target in "${targets[@]}"; do
    corpus=fuzz/corpus/$target
    artifacts=fuzz/artifacts/$target
    mkdir -p "$corpus" "$artifacts"
    cp fuzz/seeds/"$target"/* "$corpus"/
    before=$(ls "$artifacts")
    log=$logs/$target.log

    echo "fuzz.sh: $target for ${seconds}s (-max_len=$(max_len "$target"))"
    start=$(date +%s)
    status=0
    # -timeout: one input taking 10 s is a hang. -rss_limit_mb: libFuzzer's default.
    cargo fuzz run "$target" "$corpus" -- \
        -max_total_time="$seconds" -max_len="$(max_len "$target")" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1 || status=$?
    ran=$(($(date +%s) - start))
    # libFuzzer's own count of the seconds it fuzzed (the wall time above also holds a
    # rebuild, if crates/ changed since the build step).
    fuzzed=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n 1)
    ran=${fuzzed:-$ran}

    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    size=$(find "$corpus" -type f | wc -l)
    found=()
    for artifact in $(ls "$artifacts"); do
        if ! grep -qxF "$artifact" <<<"$before"; then
            found+=("$artifacts/$artifact")
        fi
    done
    crashes=${#found[@]}
    if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then
        crashes="failed" # e.g. a build error: see the log
    fi
    if [ "$status" -ne 0 ] || [ ${#found[@]} -gt 0 ]; then
        failed+=("$target")
        echo "fuzz.sh: $target FAILED (exit $status); log: $log"
        grep -E -A 1 "panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer|SUMMARY" "$log" |
            head -n 20 || true
        if ! grep -q "ERROR: " "$log"; then
            tail -n 20 "$log"
        fi
        for artifact in "${found[@]}"; do
            echo "  artifact: $artifact"
            echo "    reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz $target $artifact"
            echo "    minimise:  RUSTC_BOOTSTRAP=1 cargo fuzz tmin --fuzz-dir fuzz $target $artifact"
        done
    fi
    rows+=("$target ${ran} ${runs:-?} $size $crashes")
done

echo
printf '%-14s %8s %12s %8s %8s\n' target seconds executions corpus crashes
total_seconds=0
total_runs=0
for row in "${rows[@]}"; do
    read -r target ran runs size crashes <<<"$row"
    printf '%-14s %8s %12s %8s %8s\n' "$target" "$ran" "$runs" "$size" "$crashes"
    total_seconds=$((total_seconds + ran))
    if [[ "$runs" =~ ^[0-9]+$ ]]; then
        total_runs=$((total_runs + runs))
    fi
done
printf '%-14s %8s %12s\n' total "$total_seconds" "$total_runs"

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz.sh: ${#failed[@]} target(s) failed: ${failed[*]} (see above; fuzz/README.md says how a crash becomes a regression test)" >&2
    exit 1
fi
echo "fuzz.sh: no crashes"
