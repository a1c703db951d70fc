#!/usr/bin/env bash
# Runs demo/mpi-demo.sh and checks its three documented results (CI's first test step,
# tests/run-all.sh):
#   1. without hooks:        rank 0 of 1: MPICH Version: 3.4.1   (the image's MPI)
#   2. mpi-hook alone:       refused, naming glibc 2.34 vs 2.31 and the annotation to add
#   3. mpi-hook + glibc-hook: rank 0 of 1: MPICH Version: 4.0.2   (the host's MPI)
# The first run builds what it needs (hooks, cached image); a second run must give the same
# results in less than DEMO_MAX_SECONDS (default 10), the time a newcomer waits once built.
# Exits non-zero, with the demo's output, otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
fail() { echo "check-demo.sh: FAILED: $1" >&2; exit 1; }
# The lines of section N (between "== N." and the next "== " header).
section() { awk -v n="== $1." 'index($0, n) == 1 {on = 1; next} /^== / {on = 0} on' "$log"; }
check() {
  local s1 s2 s3
  s1=$(section 1) s2=$(section 2) s3=$(section 3)
  grep -qxP 'rank 0 of 1: MPICH Version:\s+3\.4\.1' <<<"$s1" \
    || fail "1. without hooks: expected 'rank 0 of 1: MPICH Version: 3.4.1' (the image's MPICH), got: $s1"
  grep -qP '^mpi-hook: .*need glibc 2\.34 .*the container has glibc 2\.31; add the annotation com\.hooks\.glibc\.enabled=true' <<<"$s2" \
    || fail "2. mpi-hook alone: expected the refusal naming glibc 2.34, 2.31 and com.hooks.glibc.enabled=true, got: $s2"
  ! grep -q 'rank 0 of' <<<"$s2" || fail "2. mpi-hook alone: the container ran although it must be refused"
  grep -qxP 'rank 0 of 1: MPICH Version:\s+4\.0\.2' <<<"$s3" \
    || fail "3. both hooks: expected 'rank 0 of 1: MPICH Version: 4.0.2' (the host's MPICH), got: $s3"
}
echo "check-demo.sh: first run (builds the hooks and the image when needed)"
demo/mpi-demo.sh >"$log" 2>&1
rc=$?
cat "$log"
[ $rc = 0 ] || fail "demo/mpi-demo.sh exited with $rc"
check
echo "check-demo.sh: second run (built: timed)"
t0=$(date +%s%N)
demo/mpi-demo.sh >"$log" 2>&1
rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
[ $rc = 0 ] || { cat "$log"; fail "demo/mpi-demo.sh exited with $rc on the second run"; }
check
max=${DEMO_MAX_SECONDS:-10}
[ "$ms" -lt $((max * 1000)) ] || { cat "$log"; fail "the built demo took $ms ms, more than ${max} s"; }
echo "check-demo.sh: OK: MPICH 3.4.1 without hooks, refused with mpi-hook alone (glibc 2.34 vs 2.31), MPICH 4.0.2 with both hooks; built demo ran in $ms ms"
