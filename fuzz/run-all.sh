#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60), one after the other, one libFuzzer
# process at a time, and fails if any target crashes, panics, times out or runs out of
# memory. Builds the seed corpora first when fuzz/corpus is missing (fuzz/make-corpus.sh).
#
# Usage: fuzz/run-all.sh [SECONDS] [TARGET...]
# Needs: a nightly toolchain (rustup toolchain install nightly) and cargo-fuzz
# (cargo install cargo-fuzz). Logs: fuzz/logs/<target>.log; crashing inputs:
# fuzz/artifacts/<target>/ (reproduce with: cargo +nightly fuzz run -a -O TARGET FILE).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

seconds=${1:-60}
shift || true
case $seconds in
    '' | *[!0-9]*) echo "run-all: SECONDS must be a whole number, got '$seconds'" >&2; exit 2 ;;
esac
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    targets=(state_json config_json ldcache elf cdi_spec mpi_libname)
fi

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "run-all: cargo-fuzz with a nightly toolchain is needed: rustup toolchain install nightly && cargo install cargo-fuzz" >&2
    exit 2
fi
[ -d corpus ] || ./make-corpus.sh

# -a: debug assertions, so arithmetic overflow in a parser is a crash, not a silent wrap.
build_flags=(-O -a)
echo "run-all: building fuzz targets" >&2
cargo +nightly fuzz build "${build_flags[@]}" >&2

mkdir -p logs
failed=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    log="logs/$t.log"
    echo "run-all: $t for ${seconds}s" >&2
    # -timeout: one input taking over 10 s is a failure; -rss_limit_mb: so is 2 GiB.
    if cargo +nightly fuzz run "${build_flags[@]}" "$t" "corpus/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1; then
        runs=$(grep -oE 'Done [0-9]+ runs in [0-9]+ second' "$log" | tail -1 || true)
        echo "run-all: $t ok: ${runs:-no summary line} (corpus: $(find "corpus/$t" -type f | wc -l) inputs)" >&2
    else
        echo "run-all: $t FAILED; last lines of $log:" >&2
        tail -n 40 "$log" >&2
        ls -l "artifacts/$t" >&2 || true
        failed+=("$t")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "run-all: crashes in: ${failed[*]} (inputs in fuzz/artifacts/<target>/)" >&2
    exit 1
fi
echo "run-all: all ${#targets[@]} targets ran ${seconds}s each without a crash" >&2
