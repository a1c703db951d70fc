#!/usr/bin/env bash
# Slurm Epilog (slurm.conf: Epilog=/usr/libexec/hpc-hooks/epilog-hpc-rank.sh, or call it
# from the site's epilog). Runs as root on each node when a job ends and removes every
# container the job's hpc-rank launchers left (runc state and rank cgroups, which live
# under the job step's own cgroup, after SIGKILL of a step; podman containers whose
# conmon left the job's process tree), plus stale ones of any job whose launcher is gone. A non-zero exit drains the node, on purpose: a node
# with containers nobody can remove needs an admin.
set -euo pipefail
hpc_rank=${HPC_RANK:-/usr/bin/hpc-rank}
if [ ! -x "$hpc_rank" ]; then
  echo "epilog-hpc-rank.sh: $hpc_rank not found; install it (the hpc-hooks package, or packaging/install.sh) or set HPC_RANK" >&2
  exit 1
fi
if [ -z "${SLURM_JOB_ID:-}" ]; then
  echo "epilog-hpc-rank.sh: SLURM_JOB_ID is not set (run it as a Slurm Epilog)" >&2
  exit 1
fi
exec "$hpc_rank" --cleanup-job "$SLURM_JOB_ID"
