#!/usr/bin/env bash
# Builds the fuzz seed corpora in fuzz/corpus/<target>/ from real files on this machine:
# its /etc/ld.so.cache, old/compat/new caches written by ldconfig into a scratch root,
# the cached Debian 11 test rootfs (if tests/rootfs/build-rootfs.sh has run), a few small
# host libraries, cdi-gen's golden specs, `runc spec` / `crun spec` output and the
# committed text seeds in fuzz/seeds/<target>/. Generated seeds are never committed.
#
# Usage: fuzz/make-corpus.sh            (rebuilds fuzz/corpus from scratch)
# Nothing outside fuzz/corpus and a temporary directory is written.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
corpus="$here/corpus"
targets=(state_json config_json ldcache elf cdi_spec mpi_libname)
libdir=/usr/lib/x86_64-linux-gnu

say() { printf 'make-corpus: %s\n' "$*" >&2; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

rm -rf "$corpus"
for t in "${targets[@]}"; do
    mkdir -p "$corpus/$t"
    if [ -d "$here/seeds/$t" ]; then
        cp "$here/seeds/$t"/* "$corpus/$t/"
    fi
done

# Copies $1 to corpus/$2 under the name $3 (default: basename), skipping missing files.
seed() {
    local src=$1 target=$2 name=${3:-$(basename "$1")}
    if [ -f "$src" ]; then
        cp -L "$src" "$corpus/$target/$name"
    else
        say "skipped (missing): $src"
    fi
}

# --- ldcache -------------------------------------------------------------------------
seed /etc/ld.so.cache ldcache host-ld.so.cache
shopt -s nullglob
n=0
for c in /var/cache/hpc-hooks-tests/*/rootfs/etc/ld.so.cache; do
    n=$((n + 1))
    seed "$c" ldcache "debian11-$n-ld.so.cache"
done
[ "$n" -gt 0 ] || say "no Debian 11 test rootfs under /var/cache/hpc-hooks-tests (run tests/rootfs/build-rootfs.sh for its cache)"

# Small caches in each format ldconfig can write, built in a scratch root (-r) so that
# neither the host's cache nor its aux-cache is touched.
small_libs=(libutil.so.1 libmemusage.so libdrop_ambient.so.0.0.0 libXss.so.1.0.0 libpsx.so.2.66)
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
            say "ldconfig -c $fmt failed: $(cat "$tmp/ldconfig.err")"
        fi
    done
else
    say "no ldconfig: only existing caches are seeds"
fi

# --- elf -----------------------------------------------------------------------------
for l in "${small_libs[@]}"; do
    seed "$libdir/$l" elf
done
for r in /var/cache/hpc-hooks-tests/debian11-mpich-*/rootfs; do
    # The image's small glibc stubs (version definitions) and its libc for the banner.
    seed "$r/lib/x86_64-linux-gnu/libutil.so.1" elf debian11-libutil.so.1
    seed "$r/lib/x86_64-linux-gnu/libdl.so.2" elf debian11-libdl.so.2
    break
done
if command -v gcc >/dev/null; then
    # A library with version needs and a version script, as small as gcc makes it.
    printf 'VERS_1.0 { global: f; local: *; };\n' >"$tmp/v.map"
    printf '#include <string.h>\nint f(char *d, const char *s){ return (int)strlen(strcpy(d, s)); }\n' >"$tmp/f.c"
    gcc -shared -fPIC -O2 -s -Wl,-soname,libfuzzseed.so.1 -Wl,--version-script="$tmp/v.map" \
        -o "$tmp/libfuzzseed.so.1" "$tmp/f.c"
    seed "$tmp/libfuzzseed.so.1" elf
fi

# --- mpi_libname: real symlink chains (link name, then its target) ----------------------
for dir in "$libdir" /var/cache/hpc-hooks-tests/debian11-mpich-*/rootfs/usr/lib/x86_64-linux-gnu; do
    [ -d "$dir" ] || continue
    for link in "$dir"/libmpi*.so* "$dir"/libhwloc*.so* "$dir"/libfabric*.so* "$dir"/libz.so* "$dir"/libc.so*; do
        [ -L "$link" ] || continue
        name=$(basename "$link")
        printf '%s\n%s\n' "$name" "$(basename "$(readlink "$link")")" >"$corpus/mpi_libname/chain-$name"
    done
done

# --- config_json ---------------------------------------------------------------------
for rt in runc crun; do
    if command -v "$rt" >/dev/null; then
        mkdir -p "$tmp/$rt" "$tmp/$rt-rootless"
        (cd "$tmp/$rt" && "$rt" spec) && seed "$tmp/$rt/config.json" config_json "$rt-spec.json"
        (cd "$tmp/$rt-rootless" && "$rt" spec --rootless) \
            && seed "$tmp/$rt-rootless/config.json" config_json "$rt-spec-rootless.json"
    else
        say "no $rt: no '$rt spec' seed"
    fi
done

# --- cdi_spec ------------------------------------------------------------------------
for g in "$root"/cdi-gen/tests/golden/*.yaml "$root"/hooks/gpu-hook/tests/golden/*.yaml; do
    seed "$g" cdi_spec
done

for t in "${targets[@]}"; do
    say "$t: $(find "$corpus/$t" -type f | wc -l) seeds, $(du -sk "$corpus/$t" | cut -f1) KiB"
done
