#!/usr/bin/env bash
# Runs every test of the workspace, as root, on a Debian 12 machine prepared as
# .ci/run does (runc, crun, podman, debootstrap, mpich, gcc, busybox-static, lintian):
#   0. runs the demo on the clean checkout and checks its results (demo/check-demo.sh);
#   1. builds everything once (release, all targets), plus the shipped static hooks
#      (x86_64-unknown-linux-musl) and the Debian package (packaging/deb/build-deb.sh),
#      checked with lintian (no error, no warning);
#      the tests run the static hooks (HPC_HOOKS_BIN_DIR=target/dist/bin);
#   2. builds or reuses the cached test rootfs (Debian 11 + MPICH 3.4.1, + Open MPI 4.1.0,
#      Debian 12 + MPICH, Debian 11 + libfabric 1.11 / UCX 1.10);
#   3. runs the unit and crate tests of every crate but the e2e suite, then the planning
#      and engine tests again as an unprivileged user (tests/run-unprivileged.sh);
#   4. runs the end-to-end tests (tests/e2e) serially, against real runtimes, the
#      package test (install, MPI scenario, purge) among them;
#   5. runs every fuzz target briefly (FUZZ_SECONDS, default 30; fuzz/ci.sh);
#   6. runs the benchmarks (report only; HPC_HOOKS_SKIP_BENCH=1 skips them).
# Exits non-zero if any step fails; later steps still run so one CI log shows all.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
export RUST_BACKTRACE=${RUST_BACKTRACE:-0}

if [ "$(id -u)" != 0 ]; then
  echo "run-all.sh: must run as root (the end-to-end tests start containers and mount overlays)" >&2
  exit 1
fi

failed=()
step() {
  local name=$1; shift
  echo
  echo "=== $name: $*"
  local t0=$SECONDS
  if "$@"; then
    echo "=== $name: OK ($((SECONDS - t0)) s)"
  else
    echo "=== $name: FAILED ($((SECONDS - t0)) s)"
    failed+=("$name")
  fi
}

# The newcomer's first command, first, on the clean checkout (before anything else is
# built): builds exactly what it installs and checks its three documented results.
if [ "${HPC_HOOKS_DEMO_CHECKED:-0}" = 1 ]; then
  echo "=== demo: already checked by .ci/run (HPC_HOOKS_DEMO_CHECKED=1)"
else
  step demo demo/check-demo.sh
fi
step build cargo build --release --workspace --all-targets
if [[ " ${failed[*]} " == *" build "* ]]; then
  echo "run-all.sh: build failed, nothing else can run" >&2
  exit 1
fi
target=${CARGO_TARGET_DIR:-$root/target}
# The hooks as shipped: statically linked (musl), so no image LD_PRELOAD can reach them.
step static-hooks cargo build --release --target x86_64-unknown-linux-musl -p mpi-hook -p glibc-hook -p gpu-hook
if [ -z "${HPC_HOOKS_BIN_DIR:-}" ]; then
  dist=$target/dist/bin
  mkdir -p "$dist"
  for b in mpi-hook glibc-hook gpu-hook; do cp -f "$target/x86_64-unknown-linux-musl/release/$b" "$dist/" || failed+=(dist); done
  for b in cdi-gen hpc-rank; do cp -f "$target/release/$b" "$dist/" || failed+=(dist); done
  export HPC_HOOKS_BIN_DIR=$dist HPC_HOOKS_REQUIRE_STATIC_HOOKS=1
fi
echo "run-all.sh: hooks under test from $HPC_HOOKS_BIN_DIR"
deb_log=$target/deb/build.log
mkdir -p "$target/deb"
build_deb() { packaging/deb/build-deb.sh --hooks-bin-dir "$HPC_HOOKS_BIN_DIR" --bin-dir "$target/release" --out "$target/deb" >"$deb_log" 2>&1; local rc=$?; cat "$deb_log"; return $rc; }
step deb build_deb
export HPC_HOOKS_DEB=$(tail -1 "$deb_log")
# The package a site admin installs: no lintian error or warning (the justified ones are
# overridden in the package: packaging/deb/lintian-overrides, with the reason).
lintian_deb() {
  command -v lintian >/dev/null || { echo "run-all.sh: lintian is not installed (apt-get install lintian)" >&2; return 1; }
  [ -f "$HPC_HOOKS_DEB" ] || { echo "run-all.sh: no .deb to check (the deb step failed)" >&2; return 1; }
  lintian --fail-on error,warning --info "$HPC_HOOKS_DEB"
}
step lintian lintian_deb

step rootfs tests/rootfs/build-rootfs.sh debian11-mpich
step rootfs-openmpi tests/rootfs/build-rootfs.sh debian11-openmpi
step rootfs-debian12 tests/rootfs/build-rootfs.sh debian12-mpich
step rootfs-net tests/rootfs/build-rootfs.sh debian11-net
step unit-tests cargo test --release --no-fail-fast --workspace --exclude e2e-tests --lib --bins --tests
step e2e-harness-tests cargo test --release -p e2e-tests --lib --bins
# Planning and the live engine's unit tests again, as nobody: they must need no privilege.
step unprivileged-tests tests/run-unprivileged.sh --release
# One-node Slurm for the multi-rank tests (tests/e2e/tests/ranks.rs), with hpc-rank's
# epilog; the tests reuse it (they would start it themselves), stopped at the end.
step slurm-up env HPC_RANK_BIN="$HPC_HOOKS_BIN_DIR/hpc-rank" tests/slurm/slurm-up.sh
# One test at a time: the e2e tests share podman, the mount table and the kernel log
# (each also takes a machine-wide flock, so this is belt and braces).
step e2e-tests cargo test --release --no-fail-fast -p e2e-tests --test '*' -- --test-threads=1
step fuzz fuzz/ci.sh "${FUZZ_SECONDS:-30}"
if [ "${HPC_HOOKS_SKIP_BENCH:-0}" != 1 ]; then
  step benchmark cargo run --release -p e2e-tests --bin bench-hooks -- --pairs "${BENCH_PAIRS:-10}"
  # The hooks' own time rootless (an unprivileged user's podman) against rootful, alternating.
  step rootless-benchmark cargo run --release -p e2e-tests --bin bench-rootless -- --pairs "${BENCH_PAIRS:-10}"
  step cdi-gen-benchmark env CDI_GEN_BENCH_RUNS="${CDI_GEN_BENCH_RUNS:-21}" cargo bench -p cdi-gen --bench generate
  step gpu-hook-benchmark env GPU_HOOK_BENCH_RUNS="${GPU_HOOK_BENCH_RUNS:-15}" cargo bench -p gpu-hook --bench hook_time
fi
step slurm-down tests/slurm/slurm-down.sh

echo
if [ ${#failed[@]} -ne 0 ]; then
  echo "run-all.sh: FAILED steps: ${failed[*]}"
  exit 1
fi
echo "run-all.sh: all steps passed"
