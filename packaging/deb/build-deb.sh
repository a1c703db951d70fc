#!/usr/bin/env bash
# Builds the Debian package hpc-hooks_<version>-<rev>_<arch>.deb with dpkg-deb.
#
#   packaging/deb/build-deb.sh [--out DIR] [--hooks-bin-dir DIR] [--bin-dir DIR]
#                              [--docs-dir DIR] [--revision N] [--maintainer 'NAME <EMAIL>']
#                              [--allow-dynamic-hooks]
#
# Contents: the statically linked hooks (mpi-hook, glibc-hook, gpu-hook) in
# /usr/libexec/hpc-hooks, cdi-gen and hpc-rank in /usr/bin, hpc-hooks-configure in
# /usr/sbin, the default configuration /etc/hpc-hooks/hpc-hooks.conf (a conffile), the
# hooks.d templates, the CDI refresh units and udev rule, the Slurm epilog, man pages and
# bash/zsh/fish completions generated from the clap definitions, the docs (README.md,
# docs/*.md, SECURITY.md) and lintian overrides (lintian-overrides, with reasons). The
# maintainer scripts write the hooks.d files on configure (hpc-hooks-configure), remove
# them on remove, and remove everything the package created on purge.
# Defaults: hooks from target/x86_64-unknown-linux-musl/release, the rest from
# target/release, man pages and completions generated with `cargo run -p xtask -- docs`
# (or taken from --docs-dir), output into target/deb. The hooks must be static (no
# PT_INTERP): a dynamically linked hook would let an image's LD_PRELOAD run as root
# (SECURITY.md); --allow-dynamic-hooks overrides that for development only.
# Maintainer (control file and changelog): --maintainer, else "$DEBFULLNAME <$DEBEMAIL>",
# else the project's address. `lintian` reports no error or warning (tests/run-all.sh).
# Prints the path of the .deb on the last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
die() { echo "build-deb.sh: $1" >&2; exit 1; }
out=$top/target/deb
hooks_bin=$top/target/x86_64-unknown-linux-musl/release
bin=$top/target/release
docs=
revision=1
allow_dynamic=0
maintainer=
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --hooks-bin-dir) hooks_bin=$2; shift 2 ;;
    --bin-dir) bin=$2; shift 2 ;;
    --docs-dir) docs=$2; shift 2 ;;
    --revision) revision=$2; shift 2 ;;
    --maintainer) maintainer=$2; shift 2 ;;
    --allow-dynamic-hooks) allow_dynamic=1; shift ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
for c in dpkg-deb dpkg-shlibdeps gzip readelf; do
  command -v "$c" >/dev/null || die "$c not found: apt-get install dpkg-dev binutils gzip"
done

if [ -z "$maintainer" ]; then
  if [ -n "${DEBEMAIL:-}" ]; then maintainer="${DEBFULLNAME:-hpc-hooks maintainers} <$DEBEMAIL>"
  else maintainer="hpc-hooks maintainers <hpc-hooks-maintainers@lists.example.org>"; fi
fi
case "$maintainer" in
  *'<'*@*'>'*) ;;
  *) die "--maintainer '$maintainer' is not of the form 'NAME <EMAIL>'" ;;
esac
case "$maintainer" in
  *@localhost*|*@*.localdomain*|*'<root@'*) die "--maintainer '$maintainer': give an address people can write to (lintian rejects root and localhost)" ;;
esac

version=$(awk -F'"' '/^\[workspace.package\]/{w=1} w && /^version *=/{print $2; exit}' "$top/Cargo.toml")
[ -n "$version" ] || die "cannot read the workspace version from Cargo.toml"
arch=$(dpkg --print-architecture)
pkg=hpc-hooks
deb_version=$version-$revision

for b in mpi-hook glibc-hook gpu-hook; do
  f=$hooks_bin/$b
  [ -x "$f" ] || die "$f not found: cargo build --release --target x86_64-unknown-linux-musl -p mpi-hook -p glibc-hook -p gpu-hook (or --hooks-bin-dir)"
  if readelf -lW "$f" | grep -q 'Requesting program interpreter'; then
    [ "$allow_dynamic" = 1 ] || die "$f is dynamically linked; the package ships static hooks only (build them for x86_64-unknown-linux-musl)"
    echo "build-deb.sh: WARNING: packaging the dynamically linked $f (--allow-dynamic-hooks)" >&2
  fi
done
for b in cdi-gen hpc-rank; do
  [ -x "$bin/$b" ] || die "$bin/$b not found: cargo build --release -p cdi-gen -p hpc-rank (or --bin-dir)"
done

stage=$(mktemp -d "${TMPDIR:-/tmp}/hpc-hooks-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT
root=$stage/root
if [ -z "$docs" ]; then
  docs=$stage/docs
  (cd "$top" && cargo run --release -q -p xtask -- docs --out "$docs") || die "generating man pages and completions failed (cargo run -p xtask -- docs)"
fi
[ -d "$docs/man" ] && [ -d "$docs/completions" ] || die "$docs has no man/ and completions/ (xtask docs output)"

d() { install -d -m 0755 "$root/$1"; }
d DEBIAN; d usr/bin; d usr/sbin; d usr/libexec/hpc-hooks; d etc/hpc-hooks
d usr/share/hpc-hooks/hooks.d; d lib/systemd/system; d lib/udev/rules.d
d usr/share/doc/$pkg; d usr/share/bash-completion/completions
d usr/share/zsh/vendor-completions; d usr/share/fish/vendor_completions.d
# The hooks.d directories belong to the package, so purge removes them when it emptied them.
d usr/share/containers/oci/hooks.d; d etc/containers/oci/hooks.d
for b in mpi-hook glibc-hook gpu-hook; do install -m 0755 "$hooks_bin/$b" "$root/usr/libexec/hpc-hooks/"; done
install -m 0755 "$top/packaging/slurm/epilog-hpc-rank.sh" "$root/usr/libexec/hpc-hooks/"
for b in cdi-gen hpc-rank; do install -m 0755 "$bin/$b" "$root/usr/bin/"; done
strip --strip-unneeded "$root"/usr/bin/* "$root"/usr/libexec/hpc-hooks/*-hook 2>/dev/null || true
install -m 0755 "$top/packaging/hpc-hooks-configure" "$root/usr/sbin/"
install -m 0644 "$top/packaging/hpc-hooks.conf" "$root/etc/hpc-hooks/"
d etc/logrotate.d
install -m 0644 "$top/packaging/logrotate/hpc-hooks" "$root/etc/logrotate.d/hpc-hooks"
install -m 0644 "$top"/packaging/hooks.d/*.json.in "$root/usr/share/hpc-hooks/hooks.d/"
install -m 0644 "$top"/packaging/systemd/cdi-gen-refresh.{service,path} "$root/lib/systemd/system/"
install -m 0644 "$top"/packaging/systemd/cdi-gen-mpi-refresh.{service,path} "$root/lib/systemd/system/"
install -m 0644 "$top/packaging/udev/99-cdi-gen.rules" "$root/lib/udev/rules.d/"
for sec in 1 5 8; do
  [ -d "$docs/man/man$sec" ] || continue
  d usr/share/man/man$sec
  for m in "$docs/man/man$sec"/*; do
    gzip -9n <"$m" >"$root/usr/share/man/man$sec/$(basename "$m").gz"
    chmod 0644 "$root/usr/share/man/man$sec/$(basename "$m").gz"
  done
done
# Hand-written pages for what clap does not describe: the configure tool and its file.
for m in "$top"/packaging/man/*.[58]; do
  sec=${m##*.}
  d usr/share/man/man$sec
  gzip -9n <"$m" >"$root/usr/share/man/man$sec/$(basename "$m").gz"
  chmod 0644 "$root/usr/share/man/man$sec/$(basename "$m").gz"
done
install -m 0644 "$docs"/completions/bash/* "$root/usr/share/bash-completion/completions/"
install -m 0644 "$docs"/completions/zsh/* "$root/usr/share/zsh/vendor-completions/"
install -m 0644 "$docs"/completions/fish/* "$root/usr/share/fish/vendor_completions.d/"
# The docs keep their relative links: README.md beside docs/ (the units link docs/cdi-gen.md).
install -m 0644 "$top/README.md" "$top/SECURITY.md" "$root/usr/share/doc/$pkg/"
d usr/share/doc/$pkg/docs
install -m 0644 "$top"/docs/*.md "$root/usr/share/doc/$pkg/docs/"
d usr/share/lintian/overrides
install -m 0644 "$here/lintian-overrides" "$root/usr/share/lintian/overrides/$pkg"
cat >"$root/usr/share/doc/$pkg/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: hpc-hooks

Files: *
Copyright: 2024-2026 the hpc-hooks authors
License: Apache-2.0
 On Debian systems, the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
EOF
printf '%s (%s) unstable; urgency=medium\n\n  * Built from the hpc-hooks workspace.\n\n -- %s  %s\n' \
  "$pkg" "$deb_version" "$maintainer" "$(date -R -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}")" \
  | gzip -9n >"$root/usr/share/doc/$pkg/changelog.Debian.gz"
chmod 0644 "$root/usr/share/doc/$pkg"/*.* "$root/usr/share/doc/$pkg"/copyright "$root/usr/share/doc/$pkg"/docs/*

# Shared-library dependencies of the dynamically linked binaries (cdi-gen, hpc-rank).
mkdir -p "$stage/shlibs/debian"
printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$pkg" "$pkg" >"$stage/shlibs/debian/control"
depends=$(cd "$stage/shlibs" && dpkg-shlibdeps -O "$root/usr/bin/cdi-gen" "$root/usr/bin/hpc-rank" 2>/dev/null \
  | sed -n 's/^shlibs:Depends=//p')
[ -n "$depends" ] || die "dpkg-shlibdeps found no dependencies for cdi-gen/hpc-rank"
installed_size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)

cat >"$root/DEBIAN/control" <<EOF
Package: $pkg
Version: $deb_version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $installed_size
Depends: $depends
Recommends: podman | runc | crun
Suggests: slurm-client, mpich | openmpi-bin
Section: admin
Priority: optional
Homepage: https://example.invalid/hpc-hooks
Description: OCI hooks and CDI generator for HPC and GPU containers
 mpi-hook, glibc-hook and gpu-hook are OCI hooks that inject the host's MPI,
 glibc and GPU libraries and devices into containers started by podman, runc
 or crun (hooks.d; annotations com.hooks.mpi.enabled and
 com.hooks.glibc.enabled). cdi-gen writes CDI specs for the node's NVIDIA and
 AMD GPUs; hpc-rank starts one MPI rank per container under Slurm or mpiexec.
 The hooks are statically linked and never execute anything from the image.
EOF
printf '%s\n' /etc/hpc-hooks/hpc-hooks.conf /etc/logrotate.d/hpc-hooks >"$root/DEBIAN/conffiles"
for s in postinst prerm postrm; do install -m 0755 "$here/$s" "$root/DEBIAN/$s"; done
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles" "$root/DEBIAN/md5sums"

mkdir -p "$out"
deb=$out/${pkg}_${deb_version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "build-deb.sh: built $deb ($(du -k "$deb" | cut -f1) KiB, Depends: $depends)" >&2
echo "$deb"
