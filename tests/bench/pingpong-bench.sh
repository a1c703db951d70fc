#!/usr/bin/env bash
# Ping-pong benchmark: 2 MPI ranks in hpc-rank containers (runc, host MPI injected by
# mpi-hook + glibc-hook) vs the same program built natively on the host with the host
# MPI, both under `srun -n 2`, alternating, in ONE Slurm job script. `--mpi mpich` (the
# default: Debian 11 MPICH image, `--mpi=pmi2`) or `--mpi openmpi` (Debian 11 Open MPI
# image on the host Open MPI, `--mpi=pmix`).
#
#   tests/bench/pingpong-bench.sh [--mpi mpich|openmpi] [--pairs N] [--small-iters N]
#                                 [--large-iters N] [--rootfs DIR] [--bin-dir DIR] [--hooks-dir DIR]
#
# Each pair runs native, container, native again. Reports medians and best runs of: 8 B
# one-way latency (us), 1 MiB bandwidth (MB/s), and the time from `srun` to both ranks
# having returned from MPI_Init (ms), native vs containers, the container/native ratios,
# and the A/A ratio (the second native runs over the first): on a small VM whose vCPUs
# the hypervisor moves between physical cores, two busy-polling ranks see +-10 % from run
# to run; a container/native ratio inside the A/A spread is not a measurable difference.
# Run as root on a machine prepared as .ci/run does; it starts (or reuses) the one-node
# Slurm of tests/slurm/slurm-up.sh.
# Defaults: 10 pairs, 10000 x 8 B, 1000 x 1 MiB (each preceded by OSU-style warmup),
# binaries from target/release (HPC_HOOKS_BIN_DIR), the cached Debian 11 test rootfs.
# Each run is limited to $PINGPONG_RUN_TIMEOUT seconds (120); a failed or hung run is
# reported and fails the benchmark, the others are still measured.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
pairs=10 small=10000 large=1000 rootfs= hooks_dir= run_timeout=${PINGPONG_RUN_TIMEOUT:-120} mpi=mpich
bin_dir=${HPC_HOOKS_BIN_DIR:-$top/target/release}
die() { echo "pingpong-bench.sh: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case "$1" in
    --mpi) mpi=$2; shift 2 ;;
    --pairs) pairs=$2; shift 2 ;;
    --small-iters) small=$2; shift 2 ;;
    --large-iters) large=$2; shift 2 ;;
    --rootfs) rootfs=$2; shift 2 ;;
    --bin-dir) bin_dir=$2; shift 2 ;;
    --hooks-dir) hooks_dir=$2; shift 2 ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
case "$mpi" in
  mpich) cc=mpicc recipe=debian11-mpich pmi=pmi2 mpi_libs= ;;
  openmpi) cc=mpicc.openmpi recipe=debian11-openmpi pmi=pmix
    mpi_libs=$(ldconfig -p | awk '/libmpi\.so\.40 .*x86-64/ && !f {f = $NF} END {print f}')
    [ -n "$mpi_libs" ] || die "no host Open MPI (libmpi.so.40) in ldconfig -p: apt-get install openmpi-bin libopenmpi-dev" ;;
  *) die "--mpi $mpi: use mpich or openmpi" ;;
esac
[ "$(id -u)" = 0 ] || die "must run as root (runc, overlay mounts)"
for c in "$cc" srun sbatch; do
  command -v "$c" >/dev/null || die "\`$c\` not found: apt-get install mpich libmpich-dev slurmctld slurmd slurm-client"
done
for b in hpc-rank mpi-hook glibc-hook; do
  [ -x "$bin_dir/$b" ] || die "$bin_dir/$b not found: cargo build --release -p hpc-rank -p mpi-hook -p glibc-hook (or --bin-dir)"
done
[ -n "$rootfs" ] || rootfs=$("$top/tests/rootfs/build-rootfs.sh" "$recipe" | tail -1)
[ -x "$rootfs/usr/local/bin/mpi-pingpong" ] || die "$rootfs has no /usr/local/bin/mpi-pingpong (rebuild it with tests/rootfs/build-rootfs.sh $recipe)"

work=$(mktemp -d /var/tmp/hpc-hooks-pingpong-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT
"$cc" -O2 -o "$work/mpi-pingpong" "$top/tests/programs/mpi-pingpong.c"
if [ -z "$hooks_dir" ]; then
  hooks_dir=$work/hooks.d
  # UCX (MPICH's ch4:ucx) loads its transports (CMA, ...) from <libdir>/ucx at run time:
  # without that directory in the container, 1 MiB messages lose CMA zero-copy.
  binds=()
  ucp=$(ldconfig -p | awk '/libucp\.so\.0 / && !f {f = $NF} END {print f}')
  if [ -n "$ucp" ] && [ -d "$(dirname "$ucp")/ucx" ]; then binds=(--bind-mounts "$(dirname "$ucp")/ucx"); fi
  # The host MPI of the chosen family only (mpi-hook finds Open MPI's components itself).
  [ -z "$mpi_libs" ] || binds+=(--mpi-libs "$mpi_libs")
  "$top/packaging/install.sh" --no-build --bins mpi-hook,glibc-hook --gpu no --bin-dir "$bin_dir" \
    --libexec "$work/libexec" --hooks-dir "$hooks_dir" --log-level warn --log-file "$work/hooks.log" "${binds[@]}" >"$work/install.log" 2>&1 \
    || { cat "$work/install.log" >&2; die "packaging/install.sh could not write the hooks.d files"; }
  # Only the two hooks this benchmark is about (install.sh may also write others).
  find "$hooks_dir" -name '*.json' ! -name hpc-hooks-mpi.json ! -name hpc-hooks-glibc.json -delete
fi
eval "$(HPC_RANK_BIN=$bin_dir/hpc-rank "$top/tests/slurm/slurm-up.sh")"

cat >"$work/job.sh" <<JOB
#!/bin/bash
# One job, alternating native and container runs.
set -u
for i in \$(seq 1 $pairs); do
  for mode in native container native2; do
    if [ \$mode != container ]; then cmd=("$work/mpi-pingpong"); else
      cmd=("$bin_dir/hpc-rank" --hooks-dir "$hooks_dir" "$rootfs" /usr/local/bin/mpi-pingpong); fi
    t0=\$(date +%s%6N)
    out=\$(timeout $run_timeout srun -n 2 --mpi=$pmi "\${cmd[@]}" $small $large) || { echo "RUN FAILED \$mode \$i (exit \$?)"; echo "\$out"; continue; }
    echo "\$out" | awk -v m=\$mode -v t0=\$t0 '
      /init_epoch_us=/ { split(\$2, a, "="); if (a[2] > mx) mx = a[2] }
      /mpi_version=/ { sub(/.*mpi_version=(MPICH Version:[ \t]*|Open MPI v)/, ""); sub(/[, ].*/, ""); v = \$0 }
      /bytes=8 / { for (f = 1; f <= NF; f++) if (\$f ~ /^latency_us=/) { split(\$f, a, "="); lat = a[2] } }
      /bytes=1048576 / { for (f = 1; f <= NF; f++) if (\$f ~ /^bandwidth_MBps=/) { split(\$f, a, "="); bw = a[2] } }
      END { printf "RESULT %s lat_us=%s bw_MBps=%s init_ms=%.1f mpi=%s\n", m, lat, bw, (mx - t0) / 1000, v }'
  done
done
exit 0
JOB
chmod +x "$work/job.sh"
echo "pingpong-bench: $mpi ($pmi), $pairs pairs, $small x 8 B, $large x 1 MiB, rootfs $rootfs"
sbatch --wait -n 2 -J pingpong-bench -o "$work/job.out" "$work/job.sh" >/dev/null \
  || { cat "$work/job.out" >&2 || true; die "the benchmark job failed"; }
grep -E "^(RESULT|RUN FAILED)" "$work/job.out" || true
awk '
  function median(arr, n,   i, j, t) {
    for (i = 2; i <= n; i++) { t = arr[i]; for (j = i - 1; j >= 1 && arr[j] > t; j--) arr[j + 1] = arr[j]; arr[j + 1] = t }
    return n % 2 ? arr[(n + 1) / 2] : (arr[n / 2] + arr[n / 2 + 1]) / 2
  }
  /^RESULT/ {
    m = $2
    for (f = 3; f <= NF; f++) { split($f, a, "="); k = a[1]; v = a[2]
      if (k == "mpi") ver[m] = v; else { n[m, k]++; val[m, k, n[m, k]] = v } }
  }
  END {
    split("lat_us bw_MBps init_ms", keys, " ")
    for (ki = 1; ki <= 3; ki++) { k = keys[ki]
      for (mi = 1; mi <= 3; mi++) { m = (mi == 1 ? "native" : mi == 2 ? "container" : "native2"); cnt = n[m, k]
        delete tmp; for (i = 1; i <= cnt; i++) tmp[i] = val[m, k, i]; med[m, k] = median(tmp, cnt)
        # best run: lowest latency and init time, highest bandwidth
        b = tmp[1]; for (i = 2; i <= cnt; i++) if (k == "bw_MBps" ? tmp[i] > b : tmp[i] < b) b = tmp[i]; best[m, k] = b } }
    printf "\n%-30s %10s %10s %7s %10s %7s\n", "median (" n["native", "lat_us"] " pairs)", "native", "container", "ratio", "native2", "A/A"
    row("8 B latency (us)", "lat_us", med, "%10.3f")
    row("1 MiB bandwidth (MB/s)", "bw_MBps", med, "%10.1f")
    row("srun -> both in MPI_Init (ms)", "init_ms", med, "%10.1f")
    printf "%-30s %10s %10s %7s %10s %7s\n", "best run", "native", "container", "ratio", "native2", "A/A"
    row("8 B latency (us)", "lat_us", best, "%10.3f")
    row("1 MiB bandwidth (MB/s)", "bw_MBps", best, "%10.1f")
    row("srun -> both in MPI_Init (ms)", "init_ms", best, "%10.1f")
    printf "MPI: native %s, container %s\n", ver["native"], ver["container"]
  }
  function row(label, k, a, f) {
    printf "%-30s " f " " f " %7.3f " f " %7.3f\n", label, a["native", k], a["container", k], a["container", k] / a["native", k], a["native2", k], a["native2", k] / a["native", k]
  }' "$work/job.out"
if grep -q "^RUN FAILED" "$work/job.out"; then
  cat "$work/job.out" >&2
  die "some runs failed or hung (output above); the medians cover the others"
fi
