#!/usr/bin/env bash
# Builds (or reuses) a cached test rootfs and prints its path.
#   build-rootfs.sh debian11-mpich | debian11-openmpi
# Recipes live in tests/rootfs/recipes/NAME.sh.
# Cache: ${HPC_HOOKS_TEST_CACHE:-/var/cache/hpc-hooks-tests}/<name>-<hash of recipe>/rootfs
# The hash covers this script, the recipe and the programs compiled into the image, so
# any change to a recipe rebuilds that image only; a fresh machine rebuilds from scratch.
set -euo pipefail
name=${1:?usage: build-rootfs.sh NAME}
here=$(cd "$(dirname "$0")" && pwd)
progs="$here/../programs"
recipe="$here/recipes/$name.sh"
[ -f "$recipe" ] || { echo "build-rootfs: unknown rootfs recipe '$name' (no $recipe)" >&2; exit 1; }
cache=${HPC_HOOKS_TEST_CACHE:-/var/cache/hpc-hooks-tests}
hash=$(cat "$0" "$recipe" "$progs"/*.c | sha256sum | cut -c1-16)
dest="$cache/$name-$hash"
if [ -f "$dest/.complete" ]; then echo "$dest/rootfs"; exit 0; fi
command -v debootstrap >/dev/null || { echo "build-rootfs: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
mkdir -p "$cache"
work=$(mktemp -d "$cache/.build-$name-XXXXXX")
trap 'umount -R "$work/rootfs/proc" 2>/dev/null || true; rm -rf "$work"' EXIT

# debootstrap_into SUITE: a minbase Debian SUITE in $work/rootfs.
debootstrap_into() {
  debootstrap --variant=minbase "$1" "$work/rootfs" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; echo "build-rootfs: debootstrap $1 failed" >&2; exit 1; }
}
# apt_in_rootfs PKG...: installs packages (no recommends) in the rootfs.
apt_in_rootfs() {
  chroot "$work/rootfs" /usr/bin/env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "$@" >"$work/apt.log" 2>&1 \
    || { tail -20 "$work/apt.log" >&2; echo "build-rootfs: apt-get install in the rootfs failed" >&2; exit 1; }
}
# build_mpi_programs MPICC: /usr/local/bin/mpi-* from tests/programs, sources in /opt/tests.
build_mpi_programs() {
  mkdir -p "$work/rootfs/opt/tests"
  cp "$progs"/*.c "$work/rootfs/opt/tests/"
  for p in "$progs"/mpi-*.c; do
    b=$(basename "$p" .c)
    chroot "$work/rootfs" "$1" -O2 -o "/usr/local/bin/$b" "/opt/tests/$b.c"
  done
}

# shellcheck source=/dev/null
. "$recipe"
# The files container images carry for the engines to bind over (/etc/hosts, hostname,
# resolv.conf: empty; /etc/mtab: a link to /proc/mounts). Engines create them when they
# are missing, which rootless podman cannot do in an overlay of this root-owned tree.
for f in hosts hostname resolv.conf; do [ -e "$work/rootfs/etc/$f" ] || : >"$work/rootfs/etc/$f"; done
[ -e "$work/rootfs/etc/mtab" ] || [ -L "$work/rootfs/etc/mtab" ] || ln -s /proc/mounts "$work/rootfs/etc/mtab"
chroot "$work/rootfs" apt-get clean
chroot "$work/rootfs" ldconfig
mv "$work/rootfs" "$work/rootfs.done"
mkdir -p "$dest"
rm -rf "$dest/rootfs"
mv "$work/rootfs.done" "$dest/rootfs"
touch "$dest/.complete"
echo "$dest/rootfs"
