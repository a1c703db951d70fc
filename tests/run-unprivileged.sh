#!/usr/bin/env bash
# Runs the planning tests and the live engine's tests as an unprivileged user (nobody), as
# root would never notice a plan that needs privileges: planning reads fixture trees only
# (golden plans, gcc-built stub libraries), and the engine's unit tests and its run of the
# composition table (engine_table) go through its recording syscall double. Needs root to switch users (setpriv).
# Usage: tests/run-unprivileged.sh [cargo test options, e.g. --release]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "run-unprivileged.sh: run as root: it builds the tests, then runs them as nobody" >&2
  exit 1
fi
command -v setpriv >/dev/null || { echo "run-unprivileged.sh: setpriv missing (apt-get install util-linux)" >&2; exit 1; }
# Test executables (one per line) of the planners and the engine.
exes=$(cargo test "$@" --no-run --message-format=json \
    -p hooks-core --lib --test plan_golden --test engine_table -p gpu-hook --test plan_golden 2>/dev/null \
  | grep -E '"profile":\{[^}]*"test":true' | grep -o '"executable":"[^"]*"' | sed 's/^"executable":"//; s/"$//')
[ -n "$exes" ] || { echo "run-unprivileged.sh: cargo built no test executable" >&2; exit 1; }
# A copy nobody can run (the checkout may sit in root's 0700 home); golden files are
# compiled into the tests. Scratch files go to a directory of nobody's outside /tmp: under
# a world-writable directory the engine trusts only root's files (as it must on a node).
dir=$(mktemp -d /var/lib/hpc-hooks-unpriv.XXXXXX)
trap 'rm -rf "$dir"' EXIT
chmod 755 "$dir"
mkdir "$dir/tmp"
chown 65534:65534 "$dir/tmp"
rc=0
for exe in $exes; do
  name=$(basename "$exe")
  install -m 755 "$exe" "$dir/$name"
  # The lib test binaries hold every unit test; only planning and the engine are meant
  # to run unprivileged (but engine::host, whose tests chown files and need root's view of
  # world-writable directories).
  filter=()
  skip=()
  case "$name" in
    hooks_core-*) filter=(plan:: engine::) skip=(--skip engine::host) ;;
  esac
  for f in "${filter[@]:-}"; do
    echo "--- as nobody: $name ${f:-(all)}"
    if ! (cd "$dir" && setpriv --reuid=65534 --regid=65534 --clear-groups \
          env -i PATH=/usr/bin:/bin HOME="$dir/tmp" TMPDIR="$dir/tmp" "./$name" ${f:+"$f"} "${skip[@]}" -q); then
      rc=1
    fi
  done
done
exit $rc
