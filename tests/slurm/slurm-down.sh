#!/usr/bin/env bash
# Stops the one-node Slurm started by slurm-up.sh, by PID (TERM, then KILL after 5 s).
# Logs stay in $HPC_SLURM_DIR (default /run/hpc-hooks-slurm).
set -euo pipefail
dir=${HPC_SLURM_DIR:-/run/hpc-hooks-slurm}
rc=0
for d in slurmd slurmctld; do
  f=$dir/$d.pid
  [ -s "$f" ] || continue
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "slurm-down.sh: $d (pid $pid) ignored SIGTERM for 5 s, sending SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || rc=1
    fi
  fi
  rm -f "$f"
done
exit $rc
