#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60), one after the other, one libFuzzer
# process at a time, and fails if any target crashes, panics, times out or runs out of
# memory. Builds the seed corpora first when the corpus directory is missing
# (fuzz/make-corpus.sh) and all targets once before running any.
#
# Usage: fuzz/run-all.sh [SECONDS] [TARGET...]
# Environment: FUZZ_CORPUS  corpus directory (default fuzz/corpus; <dir>/<target>/).
# Needs: a nightly toolchain (rustup toolchain install nightly) and cargo-fuzz
# (cargo install cargo-fuzz). Logs: fuzz/logs/<target>.log; crashing inputs:
# fuzz/artifacts/<target>/ (reproduce with: cargo +nightly fuzz run -O -a TARGET FILE).
# Prints one line per target (runs, exec/s, corpus size) and, on a crash, the input's path.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
corpus=${FUZZ_CORPUS:-$here/corpus}
all_targets=(state_json config_json ldcache elf cdi_spec mpi_libname rank_conf)

seconds=${1:-60}
shift || true
case $seconds in
    '' | *[!0-9]* | 0) echo "run-all: SECONDS must be a whole number > 0, got '$seconds'" >&2; exit 2 ;;
esac
if [ "$#" -gt 0 ]; then
    targets=("$@")
    for t in "${targets[@]}"; do
        case " ${all_targets[*]} " in
            *" $t "*) ;;
            *) echo "run-all: unknown target '$t' (targets: ${all_targets[*]})" >&2; exit 2 ;;
        esac
    done
else
    targets=("${all_targets[@]}")
fi

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "run-all: the nightly Rust toolchain is missing; install it with: rustup toolchain install nightly" >&2
    exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "run-all: cargo-fuzz is missing; install it with: cargo install cargo-fuzz" >&2
    exit 2
fi
[ -d "$corpus" ] || ./make-corpus.sh

# -a: debug assertions, so arithmetic overflow in a parser is a crash, not a silent wrap.
build_flags=(-O -a)
echo "run-all: building fuzz targets (cargo +nightly fuzz build ${build_flags[*]})" >&2
t0=$SECONDS
cargo +nightly fuzz build "${build_flags[@]}" >&2
echo "run-all: build took $((SECONDS - t0)) s" >&2

# A libFuzzer final stat from a log (`stat::NAME: VALUE`), `?` when absent.
stat() { grep -oE "^stat::$1: *[0-9]+" "$2" | tail -1 | grep -oE '[0-9]+$' || echo '?'; }

mkdir -p logs
failed=()
summary=()
for t in "${targets[@]}"; do
    mkdir -p "$corpus/$t" "artifacts/$t"
    log="logs/$t.log"
    echo "run-all: $t for ${seconds}s" >&2
    # -timeout: one input taking over 10 s is a failure; -rss_limit_mb: so is 2 GiB.
    rc=0
    cargo +nightly fuzz run "${build_flags[@]}" "$t" "$corpus/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1 || rc=$?
    line=$(printf '%-12s %10s runs %7s exec/s %6s corpus inputs' "$t" \
        "$(stat number_of_executed_units "$log")" "$(stat average_exec_per_sec "$log")" \
        "$(find "$corpus/$t" -type f | wc -l)")
    if [ "$rc" = 0 ]; then
        summary+=("$line  ok")
        echo "run-all: $line" >&2
    else
        # libFuzzer names the input it saved: "Test unit written to PATH".
        input=$(grep -oE 'Test unit written to [^ ]+' "$log" | tail -1 | sed 's/^Test unit written to //' || true)
        echo "run-all: $t FAILED (exit $rc); last lines of fuzz/$log:" >&2
        tail -n 40 "$log" >&2
        if [ -n "$input" ]; then
            input=$(realpath -m "$input")
            summary+=("$line  FAILED: crashing input $input")
            echo "run-all: $t crashing input: $input" >&2
            echo "run-all: reproduce: (cd fuzz && cargo +nightly fuzz run ${build_flags[*]} $t $input)" >&2
        else
            summary+=("$line  FAILED: no input saved (see fuzz/$log)")
        fi
        failed+=("$t")
    fi
done

echo "run-all: ${seconds}s per target:"
printf '  %s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "run-all: FAILED targets: ${failed[*]} (inputs in fuzz/artifacts/<target>/; each crash becomes a regression test in the owning crate)" >&2
    exit 1
fi
echo "run-all: all ${#targets[@]} targets ran ${seconds}s each without a crash"
