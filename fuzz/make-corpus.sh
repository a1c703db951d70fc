#!/usr/bin/env bash
# Builds the fuzz seed corpora in fuzz/corpus/<target>/ from real files on this machine:
# its /etc/ld.so.cache, old/compat/new caches written by ldconfig into a scratch root,
# the cached Debian 11 test rootfs (tests/rootfs/build-rootfs.sh debian11-mpich), a few
# small host libraries, cdi-gen's golden specs, `runc spec` / `crun spec` output and the
# committed text seeds in fuzz/seeds/<target>/. Generated seeds are never committed.
#
# Usage: fuzz/make-corpus.sh [--strict]   (rebuilds the corpus directory from scratch)
#   --strict  every seed source must be there (CI): a missing one is an error, listed
#             with what provides it, instead of a "skipped" note.
# Environment:
#   FUZZ_CORPUS       output directory (default fuzz/corpus)
#   DEBIAN11_ROOTFS   the Debian 11 test rootfs; default: the one tests/rootfs/build-rootfs.sh
#                     debian11-mpich has cached for the current recipe (under
#                     ${HPC_HOOKS_TEST_CACHE:-/var/cache/hpc-hooks-tests}); without --strict,
#                     any cached debian11-mpich rootfs.
# Nothing outside the corpus directory and a temporary directory is written.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
corpus=${FUZZ_CORPUS:-$here/corpus}
targets=(state_json config_json ldcache elf cdi_spec mpi_libname rank_conf)
libdir=/usr/lib/x86_64-linux-gnu
strict=0
case "${1:-}" in
    --strict) strict=1 ;;
    '') ;;
    *) echo "usage: fuzz/make-corpus.sh [--strict]" >&2; exit 2 ;;
esac

say() { printf 'make-corpus: %s\n' "$*" >&2; }
missing=()
# A seed source that is not there: an error with --strict (reported at the end, all at
# once), a note otherwise. $1: what is missing, $2: what provides it.
lack() {
    if [ "$strict" = 1 ]; then
        missing+=("$1 (${2})")
    else
        say "skipped (missing): $1"
    fi
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

rm -rf "$corpus"
for t in "${targets[@]}"; do
    mkdir -p "$corpus/$t"
    if [ -d "$here/seeds/$t" ]; then
        cp "$here/seeds/$t"/* "$corpus/$t/"
    fi
done

# Copies $1 to corpus/$2 under the name $3 (default: basename); $4: what provides it.
seed() {
    local src=$1 target=$2 name=${3:-$(basename "$1")} from=${4:-}
    if [ -f "$src" ]; then
        cp -L "$src" "$corpus/$target/$name"
    else
        lack "$src" "${from:-see fuzz/make-corpus.sh}"
    fi
}

# --- the Debian 11 test rootfs ---------------------------------------------------------
cache=${HPC_HOOKS_TEST_CACHE:-/var/cache/hpc-hooks-tests}
rootfs_hint="run tests/rootfs/build-rootfs.sh debian11-mpich first (CI's rootfs step), or set DEBIAN11_ROOTFS"
deb=${DEBIAN11_ROOTFS:-}
if [ -z "$deb" ]; then
    # Where build-rootfs.sh caches the current recipe (same hash as that script).
    hash=$(cat "$root/tests/rootfs/build-rootfs.sh" "$root/tests/rootfs/recipes/debian11-mpich.sh" "$root"/tests/programs/*.c | sha256sum | cut -c1-16)
    if [ -f "$cache/debian11-mpich-$hash/.complete" ]; then
        deb=$cache/debian11-mpich-$hash/rootfs
    elif [ "$strict" = 0 ]; then
        for d in "$cache"/debian11-mpich-*/rootfs; do
            [ -d "$d" ] && deb=$d
        done
    fi
fi
if [ -n "$deb" ] && [ ! -d "$deb" ]; then
    lack "Debian 11 test rootfs $deb" "$rootfs_hint"
    deb=
elif [ -z "$deb" ]; then
    lack "Debian 11 test rootfs under $cache" "$rootfs_hint"
else
    say "Debian 11 test rootfs: $deb"
fi

# --- ldcache -------------------------------------------------------------------------
seed /etc/ld.so.cache ldcache host-ld.so.cache "libc-bin; run ldconfig"
[ -z "$deb" ] || seed "$deb/etc/ld.so.cache" ldcache debian11-ld.so.cache "$rootfs_hint"

# Small libraries from packages every Debian 12 machine has (libc6, libcap2, libcap-ng0).
small_libs=(libutil.so.1 libmemusage.so libdrop_ambient.so.0.0.0)
psx=("$libdir"/libpsx.so.2.*)
if [ -f "${psx[0]}" ]; then
    small_libs+=("$(basename "${psx[0]}")")
else
    lack "$libdir/libpsx.so.2.*" "apt-get install libcap2"
fi

# Small caches in each format ldconfig can write, built in a scratch root (-r) so that
# neither the host's cache nor its aux-cache is touched.
if command -v ldconfig >/dev/null; then
    mkdir -p "$tmp/root/lib" "$tmp/root/etc" "$tmp/root/var/cache/ldconfig"
    for l in "${small_libs[@]}"; do
        [ -f "$libdir/$l" ] && cp -L "$libdir/$l" "$tmp/root/lib/"
    done
    echo /lib >"$tmp/root/etc/ld.so.conf"
    for fmt in old compat new; do
        if ldconfig -r "$tmp/root" -c "$fmt" -C "/etc/ld.so.cache.$fmt" -f /etc/ld.so.conf 2>"$tmp/ldconfig.err"; then
            seed "$tmp/root/etc/ld.so.cache.$fmt" ldcache "small-$fmt.cache"
        else
            lack "ldconfig -c $fmt output ($(cat "$tmp/ldconfig.err"))" "a glibc ldconfig that writes the $fmt format"
        fi
    done
else
    lack "ldconfig (only existing caches would be seeds)" "apt-get install libc-bin"
fi

# --- elf -----------------------------------------------------------------------------
for l in "${small_libs[@]}"; do
    seed "$libdir/$l" elf "$l" "apt-get install libc6 libcap2 libcap-ng0"
done
if [ -n "$deb" ]; then
    # The image's small glibc stubs (version definitions).
    seed "$deb/lib/x86_64-linux-gnu/libutil.so.1" elf debian11-libutil.so.1 "$rootfs_hint"
    seed "$deb/lib/x86_64-linux-gnu/libdl.so.2" elf debian11-libdl.so.2 "$rootfs_hint"
fi
if command -v gcc >/dev/null; then
    # A library with version needs and a version script, as small as gcc makes it.
    printf 'VERS_1.0 { global: f; local: *; };\n' >"$tmp/v.map"
    printf '#include <string.h>\nint f(char *d, const char *s){ return (int)strlen(strcpy(d, s)); }\n' >"$tmp/f.c"
    gcc -shared -fPIC -O2 -s -Wl,-soname,libfuzzseed.so.1 -Wl,--version-script="$tmp/v.map" \
        -o "$tmp/libfuzzseed.so.1" "$tmp/f.c"
    seed "$tmp/libfuzzseed.so.1" elf
else
    lack "gcc (for a library with version needs and definitions)" "apt-get install gcc libc6-dev"
fi

# --- mpi_libname: real symlink chains (link name, then its target) ----------------------
chains() {
    local dir=$1 n=0 link name
    for link in "$dir"/libmpi*.so* "$dir"/libhwloc*.so* "$dir"/libfabric*.so* "$dir"/libz.so* "$dir"/libc.so*; do
        [ -L "$link" ] || continue
        name=$(basename "$link")
        printf '%s\n%s\n' "$name" "$(basename "$(readlink "$link")")" >"$corpus/mpi_libname/chain-$2$name"
        n=$((n + 1))
    done
    echo "$n"
}
shopt -s nullglob
[ "$(chains "$libdir" host-)" -gt 0 ] \
    || lack "MPI library symlinks in $libdir (libmpich.so.12 -> ...)" "apt-get install libmpich-dev"
if [ -n "$deb" ]; then
    [ "$(chains "$deb/usr/lib/x86_64-linux-gnu" debian11-)" -gt 0 ] \
        || lack "MPI library symlinks in the Debian 11 rootfs" "$rootfs_hint"
fi

# --- rank_conf: this machine's /proc/self/cgroup (the committed seeds hold the configs) --
seed /proc/self/cgroup rank_conf cgroup-self "Linux /proc"

# --- config_json ---------------------------------------------------------------------
for rt in runc crun; do
    if command -v "$rt" >/dev/null; then
        mkdir -p "$tmp/$rt" "$tmp/$rt-rootless"
        (cd "$tmp/$rt" && "$rt" spec) && seed "$tmp/$rt/config.json" config_json "$rt-spec.json"
        (cd "$tmp/$rt-rootless" && "$rt" spec --rootless) \
            && seed "$tmp/$rt-rootless/config.json" config_json "$rt-spec-rootless.json"
    else
        lack "$rt (for a '$rt spec' seed)" "apt-get install $rt"
    fi
done

# --- cdi_spec ------------------------------------------------------------------------
golden=("$root"/cdi-gen/tests/golden/*.yaml)
[ "${#golden[@]}" -gt 0 ] || lack "cdi-gen/tests/golden/*.yaml" "the repository checkout"
for g in "${golden[@]}" "$root"/hooks/gpu-hook/tests/golden/*.yaml; do
    seed "$g" cdi_spec
done

for t in "${targets[@]}"; do
    n=$(find "$corpus/$t" -type f | wc -l)
    [ "$n" -gt 0 ] || lack "any seed for $t" "fuzz/seeds/$t or the sources above"
    say "$t: $n seeds, $(du -sk "$corpus/$t" | cut -f1) KiB"
done

if [ "${#missing[@]}" -gt 0 ]; then
    say "ERROR: ${#missing[@]} seed source(s) missing (--strict):"
    for m in "${missing[@]}"; do
        printf '  - %s\n' "$m" >&2
    done
    exit 1
fi
