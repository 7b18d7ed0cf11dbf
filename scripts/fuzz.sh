#!/usr/bin/env bash
# Fuzzes every reader of user files under ASan and UBSan (clang's libFuzzer; preset `fuzz`).
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET (default 600)] [TARGET ...]
#   Each target starts from its seeds (tests/fuzz/corpus/<target>) and grows a working corpus
#   in build/fuzz/corpus/<target>. A crash, hang (10 s), leak or out-of-memory (2 GB) stops the
#   target and leaves the input in build/fuzz/crashes/<target>/: fix it, then copy the input
#   into tests/fuzz/corpus/<target>/ so the regular suite replays it (ctest -R fuzz.replay).
#   Prints one line per target: executions, coverage (edges), corpus size, time, verdict.
set -uo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(ir_text plan_json cluster_json program_json checkpoint_manifest
                                  tokenizer_files dataset_header serve_request onnx_model npy_file)
if ! command -v clang++ >/dev/null; then
  echo "fuzz: clang++ is missing (sudo apt-get install clang libclang-rt-14-dev)" >&2
  exit 2
fi
cmake --preset fuzz >/dev/null || exit 2
cmake --build --preset fuzz || exit 2
status=0
printf '%-20s %12s %8s %8s %8s  %s\n' target executions edges corpus seconds verdict
for t in "${targets[@]}"; do
  corpus="build/fuzz/corpus/$t" crashes="build/fuzz/crashes/$t" log="build/fuzz/$t.log"
  mkdir -p "$corpus" "$crashes"
  start=$(date +%s)
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
    "build/fuzz/tests/fuzz/fuzz_$t" "$corpus" "tests/fuzz/corpus/$t" \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
      -artifact_prefix="$crashes/" -print_final_stats=1 >"$log" 2>&1
  rc=$?
  elapsed=$(( $(date +%s) - start ))
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  edges=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
  size=$(ls "$corpus" | wc -l)
  verdict="clean"
  if [ $rc -ne 0 ]; then verdict="FAILED (rc $rc; see $log, input in $crashes/)"; status=1; fi
  printf '%-20s %12s %8s %8s %8s  %s\n' "$t" "${execs:-?}" "${edges:-?}" "$size" "$elapsed" "$verdict"
done
exit $status
