#!/usr/bin/env bash
# Demo of the main job on a fresh Debian 12 machine, as root: a Debian 11 image with
# MPICH 3.4.1 runs on the host's MPICH 4.0.2 through mpi-hook + glibc-hook.
#   1. installs the runtimes, debootstrap and the host MPICH (apt);
#   2. builds the hooks (release) and the cached Debian 11 test image;
#   3. installs the hooks into a private hooks.d directory (packaging/install.sh);
#   4. runs the image's mpi-hello with podman: without hooks, with mpi-hook alone
#      (refused: the host MPI needs a newer glibc), and with both hooks.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "mpi-demo.sh: run as root" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
echo "== installing packages"
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends runc podman conmon debootstrap ca-certificates \
  mpich libmpich-dev gcc libc6-dev >/dev/null
echo "== building the hooks"
cargo build --release -q -p mpi-hook -p glibc-hook
echo "== building (or reusing) the Debian 11 + MPICH 3.4.1 image"
rootfs=$(tests/rootfs/build-rootfs.sh debian11-mpich)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
packaging/install.sh --no-build --libexec "$work/libexec" --hooks-dir "$work/hooks.d" \
  --log-file "$work/hooks.log" --log-level info >/dev/null
run() {
  podman --runtime runc --cgroup-manager cgroupfs --hooks-dir "$work/hooks.d" run --rm \
    --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 "$@" \
    --rootfs "$rootfs" /usr/local/bin/mpi-hello
}
echo
echo "== 1. without hooks (the image's own MPI):"
run
echo
echo "== 2. with mpi-hook only (the host MPICH needs glibc 2.34, the image has 2.31):"
run --annotation com.hooks.mpi.enabled=true 2>&1 | grep -o 'mpi-hook: .*' | head -1 || true
echo
echo "== 3. with mpi-hook and glibc-hook (the host's MPI, with the host glibc):"
run --annotation com.hooks.mpi.enabled=true --annotation com.hooks.glibc.enabled=true
echo
echo "== what the hooks did (log):"
grep -E "glibc:|bound .*mpich|added|regenerated|elapsed" "$work/hooks.log" | sed 's/^[^ ]* *//' | tail -12
