#!/usr/bin/env bash
# The CI fuzzing step: fresh seed corpora from this machine (fuzz/make-corpus.sh --strict:
# a missing seed source fails the step), one build of every target, then each target for
# SECONDS (default 30) via fuzz/run-all.sh. Fails on any crash, naming the crashing input.
#
# Usage: fuzz/ci.sh [SECONDS]
# Needs: nightly Rust and cargo-fuzz; the Debian 11 test rootfs
# (tests/rootfs/build-rootfs.sh debian11-mpich, or DEBIAN11_ROOTFS=<rootfs>); runc, crun,
# gcc, ldconfig, libmpich-dev. The corpus directory (FUZZ_CORPUS, default fuzz/corpus) is
# rebuilt from the seeds, so every CI run starts from the same inputs.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
seconds=${1:-30}

if ! command -v rustup >/dev/null || ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz/ci.sh: the nightly Rust toolchain is missing; install it with: rustup toolchain install nightly" >&2
    exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz/ci.sh: cargo-fuzz is missing; install it with: cargo install cargo-fuzz" >&2
    exit 2
fi

t0=$SECONDS
echo "fuzz/ci.sh: seed corpora" >&2
./make-corpus.sh --strict
t1=$SECONDS
rc=0
./run-all.sh "$seconds" || rc=$?
echo "fuzz/ci.sh: $((SECONDS - t0)) s in all (corpus $((t1 - t0)) s, build and ${seconds} s per target $((SECONDS - t1)) s)"
exit "$rc"
