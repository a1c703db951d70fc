#!/usr/bin/env bash
# Installs the hpc-hooks binaries and their podman hooks.d files.
#
#   packaging/install.sh [--bin-dir DIR] [--libexec DIR] [--hooks-dir DIR]...
#                        [--mpi-libs LIST] [--mpi-dependency-libs LIST] [--bind-mounts LIST]
#                        [--compat major|full|strict|dependencies] [--log-level LEVEL]
#                        [--log-file FILE] [--glibc-libs LIST] [--gpu auto|yes|no]
#                        [--gpu-driver-root DIR] [--no-build]
#
# Defaults: binaries from target/release (built unless --no-build) into
# /usr/libexec/hpc-hooks; hooks.d files into /usr/share/containers/oci/hooks.d (what
# podman 4.3 reads) and /etc/containers/oci/hooks.d (newer engines); MPI_LIBS detected
# from the host's ld.so.cache (libmpi.so.* / libmpich.so.*), MPI_DEPENDENCY_LIBS from the
# MPI library's dependencies minus glibc. gpu-hook and its hooks.d file (run for every
# container, a no-op when nothing is requested) are installed with --gpu yes, or with
# --gpu auto (default) when the node has an NVIDIA driver or /dev/kfd. Every value can
# be given explicitly.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
bin_dir="$top/target/release"
libexec=/usr/libexec/hpc-hooks
hooks_dirs=()
mpi_libs=""
mpi_deps=""
bind_mounts=""
compat=major
log_level=warn
log_file=/var/log/hpc-hooks.log
glibc_libs=""
gpu=auto
gpu_driver_root=/
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir) bin_dir=$2; shift 2 ;;
    --libexec) libexec=$2; shift 2 ;;
    --hooks-dir) hooks_dirs+=("$2"); shift 2 ;;
    --mpi-libs) mpi_libs=$2; shift 2 ;;
    --mpi-dependency-libs) mpi_deps=$2; shift 2 ;;
    --bind-mounts) bind_mounts=$2; shift 2 ;;
    --compat) compat=$2; shift 2 ;;
    --log-level) log_level=$2; shift 2 ;;
    --log-file) log_file=$2; shift 2 ;;
    --glibc-libs) glibc_libs=$2; shift 2 ;;
    --gpu) gpu=$2; shift 2 ;;
    --gpu-driver-root) gpu_driver_root=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ ${#hooks_dirs[@]} -gt 0 ] || hooks_dirs=(/usr/share/containers/oci/hooks.d /etc/containers/oci/hooks.d)

if [ "$gpu" = auto ]; then
  if [ -e /proc/driver/nvidia/version ] || [ -e /dev/kfd ]; then gpu=yes; else gpu=no; fi
fi
case "$gpu" in yes|no) ;; *) echo "install.sh: --gpu takes auto, yes or no" >&2; exit 2 ;; esac
bins=(mpi-hook glibc-hook hpc-rank)
[ "$gpu" = yes ] && bins+=(gpu-hook)
if [ "$build" = 1 ]; then
  (cd "$top" && cargo build --release $(printf -- '-p %s ' "${bins[@]}"))
fi
for b in "${bins[@]}"; do
  [ -x "$bin_dir/$b" ] || { echo "install.sh: $bin_dir/$b not found; build with 'cargo build --release' or pass --bin-dir" >&2; exit 1; }
done

if [ -z "$mpi_libs" ]; then
  mpi_libs=$(ldconfig -p | awk '$1 ~ /^lib(mpi|mpich)\.so\.[0-9]+$/ && $2 ~ /x86-64|AArch64|64/ {print $NF}' | sort -u | paste -sd: -)
  [ -n "$mpi_libs" ] || { echo "install.sh: no host MPI found in ldconfig -p (libmpi.so.N / libmpich.so.N); install one or pass --mpi-libs" >&2; exit 1; }
fi
if [ -z "$mpi_deps" ]; then
  glibc_re='^(libc|libm|libpthread|libdl|librt|libresolv|libutil|libanl|libmvec|libnsl|libBrokenLocale|libthread_db|libc_malloc_debug|libnss_[a-z]+|ld-linux[-a-z0-9_]*|ld64|linux-vdso|linux-gate)\.so'
  mpi_deps=$(for l in ${mpi_libs//:/ }; do ldd "$l"; done | awk '/=>/ && $3 ~ /^\// {print $1, $3}' \
    | grep -Ev "$glibc_re" | awk '{print $2}' | sort -u | paste -sd: -)
fi
# UCX loads its transports (shared memory, CMA zero-copy, verbs) from a plugin directory
# at run time: without it a UCX-based MPI falls back to slow copies in the container.
if [ -z "$bind_mounts" ]; then
  for l in ${mpi_deps//:/ }; do
    case "$(basename "$l")" in
      libucp.so*|libucs.so*) d="$(dirname "$(readlink -f "$l")")/ucx"; [ -d "$d" ] && bind_mounts=$d ;;
    esac
  done
fi

install -d -m 0755 "$libexec"
for b in "${bins[@]}"; do install -m 0755 "$bin_dir/$b" "$libexec/"; done
# Slurm Epilog that removes what a job's ranks left behind (see the README, Slurm section).
install -m 0755 "$here/slurm/epilog-hpc-rank.sh" "$libexec/"
esc() { printf '%s' "$1" | sed -e 's/[\\&|]/\\&/g'; }
for d in "${hooks_dirs[@]}"; do
  install -d -m 0755 "$d"
  for t in "$here"/hooks.d/*.json.in; do
    out="$d/$(basename "$t" .in)"
    if [ "$gpu" = no ] && [ "$(basename "$t")" = hpc-hooks-gpu.json.in ]; then
      rm -f "$out"; continue
    fi
    sed -e "s|@LIBEXEC@|$(esc "$libexec")|g" \
        -e "s|@MPI_LIBS@|$(esc "$mpi_libs")|g" \
        -e "s|@MPI_DEPENDENCY_LIBS@|$(esc "$mpi_deps")|g" \
        -e "s|@BIND_MOUNTS@|$(esc "$bind_mounts")|g" \
        -e "s|@MPI_COMPATIBILITY_TYPE@|$(esc "$compat")|g" \
        -e "s|@LOG_LEVEL@|$(esc "$log_level")|g" \
        -e "s|@LOG_FILE@|$(esc "$log_file")|g" \
        -e "s|@GLIBC_LIBS@|$(esc "$glibc_libs")|g" \
        -e "s|@GPU_DRIVER_ROOT@|$(esc "$gpu_driver_root")|g" "$t" > "$out.tmp"
    python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$out.tmp" \
      || { rm -f "$out.tmp"; echo "install.sh: generated $out is not valid JSON (one bad file stops podman from starting any container)" >&2; exit 1; }
    chmod 0644 "$out.tmp"; mv "$out.tmp" "$out"
    echo "installed $out"
  done
done
echo "installed ${bins[*]} into $libexec"
echo "MPI_LIBS=$mpi_libs"
echo "MPI_DEPENDENCY_LIBS=$mpi_deps"
echo "BIND_MOUNTS=$bind_mounts"
