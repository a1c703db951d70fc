#!/usr/bin/env bash
# Demo of the main job on a fresh Debian 12 machine, as root, from a fresh clone (only a
# Rust toolchain needed): a Debian 11 image with MPICH 3.4.1 runs on the host's MPICH
# 4.0.2 through mpi-hook + glibc-hook.
#   1. installs the runtimes, debootstrap and the host MPICH (apt-get, only what is missing);
#   2. builds mpi-hook and glibc-hook and installs exactly these into a private directory
#      and hooks.d (packaging/install.sh --bins; nothing is written outside it);
#   3. builds (or reuses) the cached Debian 11 test image (tests/rootfs/build-rootfs.sh,
#      the same cache the tests use);
#   4. runs the image's mpi-hello with podman: without hooks, with mpi-hook alone
#      (refused: the host MPI needs a newer glibc), and with both hooks.
# demo/check-demo.sh runs it and checks the three results (CI does). CARGO_TARGET_DIR is
# honoured.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "mpi-demo.sh: run as root" >&2; exit 1; }
command -v cargo >/dev/null || { echo "mpi-demo.sh: cargo not found: install a Rust toolchain (https://rustup.rs)" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
t0=$(date +%s%N)
echo "== installing packages"
pkgs=(runc podman conmon debootstrap wget ca-certificates mpich libmpich-dev gcc libc6-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "== building and installing mpi-hook and glibc-hook (into $work)"
packaging/install.sh --bins mpi-hook,glibc-hook --gpu no --libexec "$work/libexec" \
  --bindir "$work/bin" --hooks-dir "$work/hooks.d" --log-file "$work/hooks.log" \
  --log-level info >"$work/install.log" 2>&1 \
  || { cat "$work/install.log" >&2; echo "mpi-demo.sh: packaging/install.sh failed (above)" >&2; exit 1; }
tb=$(date +%s%N)
echo "== building (or reusing) the Debian 11 + MPICH 3.4.1 image"
rootfs=$(tests/rootfs/build-rootfs.sh debian11-mpich)
t1=$(date +%s%N)
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
# Expected to fail: the container is not started, the hook says why.
if out=$(run --annotation com.hooks.mpi.enabled=true 2>&1); then
  echo "$out"
  echo "mpi-demo.sh: the container started although mpi-hook should have refused it" >&2
  exit 1
fi
# The hook's error line, as in its log (`ERROR mpi-hook{pid=.. container=..}: message`),
# shown without the span: "mpi-hook: message".
msg=$(echo "$out" | sed -n 's/.*ERROR mpi-hook{[^}]*}: /mpi-hook: /p' | head -1)
[ -n "$msg" ] || { echo "$out"; echo "mpi-demo.sh: no mpi-hook error line in the output above" >&2; exit 1; }
echo "$msg"
echo
echo "== 3. with mpi-hook and glibc-hook (the host's MPI, with the host glibc):"
run --annotation com.hooks.mpi.enabled=true --annotation com.hooks.glibc.enabled=true
echo
echo "== what the hooks did (log):"
grep -E "glibc:|bound .*mpich|added|regenerated|elapsed" "$work/hooks.log" | sed -E 's/^[^ ]* *//; s/\{[^}]*\}//' | tail -12
t2=$(date +%s%N)
echo
ms() { echo "$((($2 - $1) / 1000000)) ms"; }
echo "== done in $(ms "$t0" "$t2") (packages and build: $(ms "$t0" "$tb"), image: $(ms "$tb" "$t1"), the three containers: $(ms "$t1" "$t2"))"
