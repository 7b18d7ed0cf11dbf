#!/usr/bin/env bash
# Failure handling of the MPI backend, end to end through mpirun:
#   kill     a rank killed with SIGKILL mid-training: the job exits non-zero within 15 s
#   hang     a rank stopped (SIGSTOP) mid-training: the others give up after --timeout 3 s with
#            a message naming the rank that waited, and the job exits non-zero within 15 s
#   corrupt  a checkpoint truncated by one byte, or with one flipped byte, is refused by
#            `alpa train --resume` (exit 1, the damaged file named), under MPI and threads
# Usage: faults.sh ALPA MPIRUN kill|hang|corrupt WORKDIR
set -uo pipefail
alpa=$1 mpirun=$2 what=$3 work=$4
rm -rf "$work" && mkdir -p "$work"
fail() { echo "FAIL: $*"; [ -f "$work/log" ] && tail -20 "$work/log"; exit 1; }

# Starts a long 2-rank run in the background; sets job (mpirun's pid) and victim (rank 1's).
start_long_run() {
  "$mpirun" -np 2 "$alpa" train --backend mpi --model gpt --size tiny --steps 1000000 \
    --timeout "$1" >"$work/log" 2>&1 &
  job=$!
  for _ in $(seq 1 200); do
    grep -q "^step 3/" "$work/log" 2>/dev/null && break
    sleep 0.1
  done
  grep -q "^step 3/" "$work/log" || fail "training did not start"
  victim=""
  for p in $(pgrep -P "$job"); do
    if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1"; then
      victim=$p
    fi
  done
  [ -n "$victim" ] || fail "no rank-1 process under mpirun $job"
}

# Waits for the job; fails unless it ends non-zero within $1 seconds.
expect_job_fails_within() {
  local limit=$1 start=$SECONDS
  while kill -0 "$job" 2>/dev/null; do
    if [ $((SECONDS - start)) -gt "$limit" ]; then
      kill -9 "$job" 2>/dev/null
      fail "the job was still running after ${limit} s"
    fi
    sleep 0.1
  done
  wait "$job"
  local rc=$?
  [ "$rc" -ne 0 ] || fail "the job exited 0"
  echo "job exited with $rc after $((SECONDS - start)) s"
}

case "$what" in
  kill)
    start_long_run 10
    kill -KILL "$victim"
    expect_job_fails_within 15
    ;;
  hang)
    start_long_run 3
    kill -STOP "$victim"
    expect_job_fails_within 15
    kill -KILL "$victim" 2>/dev/null
    grep -Eq "rank 0 on host [^ ]+: no progress for 3 s" "$work/log" || fail "no message naming the waiting rank"
    ;;
  corrupt)
    "$mpirun" -np 2 "$alpa" train --backend mpi --model gpt --size tiny --steps 2 \
      --checkpoint-dir "$work/ck" >"$work/log" 2>&1 || fail "writing the checkpoint failed"
    step="$work/ck/step-00000002"
    [ -f "$step/manifest.json" ] || fail "no manifest written"
    cp -r "$work/ck" "$work/good"
    resume() {  # runs a resume on threads and under MPI; both must be refused naming $1
      for launcher in "" "$mpirun -np 2"; do
        backend=threads; [ -n "$launcher" ] && backend=mpi
        $launcher "$alpa" train --backend $backend --model gpt --size tiny --steps 4 \
          --resume "$work/ck" >"$work/log" 2>&1
        rc=$?
        [ "$rc" -ne 0 ] || fail "a damaged checkpoint ($2) was loaded by $backend"
        grep -q "$1" "$work/log" || fail "the error ($2, $backend) does not name $1"
        grep -q "^step 3/" "$work/log" && fail "training ran from a damaged checkpoint"
      done
      rm -rf "$work/ck" && cp -r "$work/good" "$work/ck"
    }
    # The largest shard: a rank may hold no primary block at all (a data-parallel plan keeps
    # every weight's counted copy on rank 0), and an empty file cannot lose a byte.
    shard=$(ls -S "$step"/rank-*.bin | head -1)
    name=$(basename "$shard")
    truncate -s -1 "$shard"
    resume "$name.*truncated" "shard truncated by one byte"
    printf '\x7f' | dd of="$shard" bs=1 seek=100 conv=notrunc status=none
    resume "$name.*checksum" "flipped byte in a shard"
    truncate -s -1 "$step/manifest.json"
    resume "manifest.json" "manifest truncated by one byte"
    # The untouched copy still resumes.
    "$alpa" train --model gpt --size tiny --steps 3 --resume "$work/ck" >"$work/log" 2>&1 ||
      fail "the intact checkpoint did not resume"
    grep -q "^step 3/3" "$work/log" || fail "the intact checkpoint did not continue at step 3"
    ;;
  *) fail "unknown case $what" ;;
esac
echo "PASS: $what"
