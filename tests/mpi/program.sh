#!/usr/bin/env bash
# Programs under mpirun, end to end: a pipeline compiled once by `alpa compile` and run by 4 MPI
# ranks with `alpa train --program` gives exactly the losses of 4 virtual devices running the
# same file and of compiling in place; a job with another number of ranks is refused, naming
# both counts.
# Usage: program.sh ALPA MPIRUN WORKDIR
set -uo pipefail
alpa=$1 mpirun=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
fail() { echo "FAIL: $*"; exit 1; }
losses() { grep -o '"losses":\[[^]]*\]' "$1"; }

"$alpa" compile --model gpt --size tiny --devices 4 --micro-batches 2 --out "$work/p.json" \
  >"$work/compile.log" 2>&1 || fail "compile: $(tail -3 "$work/compile.log")"
"$mpirun" -np 4 "$alpa" train --backend mpi --program "$work/p.json" --steps 3 --json \
  >"$work/mpi.json" 2>"$work/mpi.err" || fail "mpi run: $(tail -3 "$work/mpi.err")"
"$alpa" train --program "$work/p.json" --steps 3 --json >"$work/threads.json" \
  || fail "threads run"
"$alpa" train --model gpt --size tiny --devices 4 --micro-batches 2 --steps 3 --json \
  >"$work/in_place.json" || fail "in-place run"
[ -n "$(losses "$work/mpi.json")" ] || fail "no losses from the MPI run"
[ "$(losses "$work/mpi.json")" = "$(losses "$work/threads.json")" ] \
  || fail "MPI $(losses "$work/mpi.json") vs threads $(losses "$work/threads.json")"
[ "$(losses "$work/mpi.json")" = "$(losses "$work/in_place.json")" ] \
  || fail "program $(losses "$work/mpi.json") vs in place $(losses "$work/in_place.json")"
"$mpirun" -np 2 "$alpa" train --backend mpi --program "$work/p.json" --steps 1 \
  >"$work/two.log" 2>&1 && fail "2 ranks ran a 4-device program"
grep -q "mpirun started 2 ranks but the program is for 4 devices" "$work/two.log" \
  || fail "no clear error for 2 ranks: $(head -3 "$work/two.log")"
echo "PASS: program"
