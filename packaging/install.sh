#!/usr/bin/env bash
# Installs the hpc-hooks binaries and their podman hooks.d files from a checkout, in the
# same layout as the Debian package (packaging/deb/build-deb.sh, the other way):
# the hooks and the Slurm Epilog in /usr/libexec/hpc-hooks, cdi-gen and hpc-rank in /usr/bin.
#
#   packaging/install.sh [--bins LIST] [--bin-dir DIR] [--libexec DIR] [--bindir DIR]
#                        [--hooks-dir DIR[:DIR]]... [--mpi-libs LIST] [--mpi-dependency-libs LIST]
#                        [--bind-mounts LIST] [--mpi-compatibility-type major|full|strict|dependencies]
#                        [--log-level LEVEL] [--log-file FILE] [--glibc-libs LIST]
#                        [--gpu auto|yes|no] [--gpu-driver-root DIR] [--net-stack auto|none]
#                        [--net-libs LIST] [--net-dependency-libs LIST] [--net-dirs LIST]
#                        [--net-devices LIST] [--nccl-plugin-dir DIR]
#                        [--nccl-plugin-mismatch warn|refuse] [--no-build]
#
# The configuration options are hpc-hooks-configure's (the hpc-hooks.conf key in lower
# case, '-' for '_'; --compat is the older name of --mpi-compatibility-type); --opt=VALUE
# works too.
#
# --bins: comma-separated subset of mpi-hook,glibc-hook,gpu-hook,cdi-gen,hpc-rank (default
# all five); exactly these are built (cargo build --release, into $CARGO_TARGET_DIR or
# target/, unless --no-build) and installed from --bin-dir (default target/release; pass
# the musl build directory for the static hooks). --libexec (hooks, Epilog) and --bindir
# (cdi-gen, hpc-rank) change where. Then packaging/hpc-hooks-configure (what the Debian
# package runs) writes the hooks.d files into /usr/share/containers/oci/hooks.d (what
# podman 4.3 reads) and /etc/containers/oci/hooks.d (newer engines), with the defaults of
# packaging/hpc-hooks.conf: MPI_LIBS from the host's ld.so.cache, their dependencies minus
# glibc, UCX's plugin directory as BIND_MOUNTS, and gpu-hook's file (run for every
# container, a no-op when nothing is requested) with --gpu yes, or with --gpu auto
# (default) when the node has an NVIDIA driver or /dev/kfd, and the network stack's file
# (libfabric, UCX, fabric devices, detected by cdi-gen: docs/network.md) unless
# --net-stack none. Every value can be given explicitly. glibc-hook is always needed;
# mpi-hook when a host MPI or a network stack is found or given; gpu-hook and cdi-gen
# when the GPU file is written (cdi-gen also detects the network stack).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
bin_dir="${CARGO_TARGET_DIR:-$top/target}/release"
libexec=/usr/libexec/hpc-hooks
bindir=/usr/bin
bins_arg=mpi-hook,glibc-hook,gpu-hook,cdi-gen,hpc-rank
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
net_args=()
build=1
while [ $# -gt 0 ]; do
  case "$1" in --*=*) set -- "${1%%=*}" "${1#*=}" "${@:2}" ;; esac
  case "$1" in
    --bin-dir|--libexec|--bindir|--bins|--hooks-dir|--mpi-libs|--mpi-dependency-libs|\
    --bind-mounts|--mpi-compatibility-type|--compat|--log-level|--log-file|--glibc-libs|\
    --gpu|--gpu-driver-root|--net-stack|--net-libs|--net-dependency-libs|--net-dirs|\
    --net-devices|--nccl-plugin-dir|--nccl-plugin-mismatch) [ $# -ge 2 ] || { echo "install.sh: option $1 needs a value (see --help)" >&2; exit 2; } ;;
  esac
  case "$1" in
    --bin-dir) bin_dir=$2; shift 2 ;;
    --libexec) libexec=$2; shift 2 ;;
    --bindir) bindir=$2; shift 2 ;;
    --bins) bins_arg=$2; shift 2 ;;
    --hooks-dir) hooks_dirs+=("$2"); shift 2 ;;
    --mpi-libs) mpi_libs=$2; shift 2 ;;
    --mpi-dependency-libs) mpi_deps=$2; shift 2 ;;
    --bind-mounts) bind_mounts=$2; shift 2 ;;
    --mpi-compatibility-type|--compat) compat=$2; shift 2 ;;
    --log-level) log_level=$2; shift 2 ;;
    --log-file) log_file=$2; shift 2 ;;
    --glibc-libs) glibc_libs=$2; shift 2 ;;
    --gpu) gpu=$2; shift 2 ;;
    --gpu-driver-root) gpu_driver_root=$2; shift 2 ;;
    --net-stack|--net-libs|--net-dependency-libs|--net-dirs|--net-devices|--nccl-plugin-dir|\
    --nccl-plugin-mismatch) net_args+=("$1" "$2"); shift 2 ;;
    --no-build) build=0; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ ${#hooks_dirs[@]} -gt 0 ] || hooks_dirs=(/usr/share/containers/oci/hooks.d /etc/containers/oci/hooks.d)

IFS=, read -r -a bins <<<"$bins_arg"
[ ${#bins[@]} -gt 0 ] || { echo "install.sh: --bins is empty" >&2; exit 2; }
for b in "${bins[@]}"; do
  case "$b" in
    mpi-hook|glibc-hook|gpu-hook|cdi-gen|hpc-rank) ;;
    *) echo "install.sh: --bins: unknown binary '$b' (one of mpi-hook,glibc-hook,gpu-hook,cdi-gen,hpc-rank)" >&2; exit 2 ;;
  esac
done
if [ "$build" = 1 ]; then
  (cd "$top" && cargo build --release $(printf -- '-p %s ' "${bins[@]}"))
fi
for b in "${bins[@]}"; do
  [ -x "$bin_dir/$b" ] || { echo "install.sh: $bin_dir/$b not found; build it with 'cargo build --release -p $b', drop --no-build, or pass --bin-dir" >&2; exit 1; }
done

install -d -m 0755 "$libexec"
for b in "${bins[@]}"; do
  case "$b" in
    *-hook) install -m 0755 "$bin_dir/$b" "$libexec/" ;;
    *) install -d -m 0755 "$bindir"; install -m 0755 "$bin_dir/$b" "$bindir/" ;;
  esac
done
# Slurm Epilog that removes what a job's ranks left behind (docs/hpc-rank.md, Slurm settings).
install -m 0755 "$here/slurm/epilog-hpc-rank.sh" "$libexec/"
echo "installed ${bins[*]} (hooks and epilog-hpc-rank.sh into $libexec, the others into $bindir)"

# The hooks.d files: the same tool the Debian package runs, with this checkout's
# templates and default configuration, and the values given here.
args=(--config "$here/hpc-hooks.conf" --templates "$here/hooks.d" --libexec "$libexec"
      --cdi-gen "$bindir/cdi-gen" --mpi-compatibility-type "$compat" --log-level "$log_level"
      --log-file "$log_file" --gpu "$gpu" --gpu-driver-root "$gpu_driver_root")
for d in "${hooks_dirs[@]}"; do args+=(--hooks-dir "$d"); done
[ -z "$mpi_libs" ] || args+=(--mpi-libs "$mpi_libs")
[ -z "$mpi_deps" ] || args+=(--mpi-dependency-libs "$mpi_deps")
[ -z "$bind_mounts" ] || args+=(--bind-mounts "$bind_mounts")
[ -z "$glibc_libs" ] || args+=(--glibc-libs "$glibc_libs")
args+=("${net_args[@]}")
exec "$here/hpc-hooks-configure" "${args[@]}"
