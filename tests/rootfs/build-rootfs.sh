#!/usr/bin/env bash
# Builds (or reuses) a cached test rootfs and prints its path.
#   build-rootfs.sh debian11-mpich
# Cache: ${HPC_HOOKS_TEST_CACHE:-/var/cache/hpc-hooks-tests}/<name>-<hash of recipe>/rootfs
# The hash covers this script and the programs compiled into the image, so any
# change to the recipe rebuilds; a fresh machine rebuilds from scratch.
set -euo pipefail
name=${1:?usage: build-rootfs.sh NAME}
here=$(cd "$(dirname "$0")" && pwd)
progs="$here/../programs"
cache=${HPC_HOOKS_TEST_CACHE:-/var/cache/hpc-hooks-tests}
hash=$(cat "$0" "$progs"/*.c | sha256sum | cut -c1-16)
dest="$cache/$name-$hash"
if [ -f "$dest/.complete" ]; then echo "$dest/rootfs"; exit 0; fi
command -v debootstrap >/dev/null || { echo "build-rootfs: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
mkdir -p "$cache"
work=$(mktemp -d "$cache/.build-$name-XXXXXX")
trap 'umount -R "$work/rootfs/proc" 2>/dev/null || true; rm -rf "$work"' EXIT
case "$name" in
  debian11-mpich)
    debootstrap --variant=minbase bullseye "$work/rootfs" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 \
      || { tail -20 "$work/debootstrap.log" >&2; echo "build-rootfs: debootstrap bullseye failed" >&2; exit 1; }
    chroot "$work/rootfs" /usr/bin/env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      mpich libmpich-dev gcc libc6-dev >"$work/apt.log" 2>&1 \
      || { tail -20 "$work/apt.log" >&2; echo "build-rootfs: apt-get install in the rootfs failed" >&2; exit 1; }
    mkdir -p "$work/rootfs/opt/tests"
    cp "$progs"/*.c "$work/rootfs/opt/tests/"
    for p in "$progs"/mpi-*.c; do
      b=$(basename "$p" .c)
      chroot "$work/rootfs" mpicc -O2 -o "/usr/local/bin/$b" "/opt/tests/$b.c"
    done
    chroot "$work/rootfs" apt-get clean
    chroot "$work/rootfs" ldconfig
    ;;
  *) echo "build-rootfs: unknown rootfs recipe '$name'" >&2; exit 1 ;;
esac
mv "$work/rootfs" "$work/rootfs.done"
mkdir -p "$dest"
rm -rf "$dest/rootfs"
mv "$work/rootfs.done" "$dest/rootfs"
touch "$dest/.complete"
echo "$dest/rootfs"
