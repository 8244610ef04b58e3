#!/usr/bin/env bash
# run.sh BUILD_DIR SECONDS: runs every fuzz target built in BUILD_DIR for SECONDS each, starting
# from its seed corpus; new inputs go to the build folder. Fails if a target finds a crash.
set -euo pipefail
build=$1
secs=${2:-30}
here=$(cd "$(dirname "$0")" && pwd)
for target in safetensors config tokenizer hfindex gguf; do
  exe="$build/tests/fuzz/fuzz_$target"
  corpus="$build/tests/fuzz/corpus_$target"
  mkdir -p "$corpus"
  echo "fuzz_$target: $secs s"
  log="$build/tests/fuzz/fuzz_$target.log"
  rc=0
  "$exe" -max_total_time="$secs" -max_len=4096 -timeout=10 -print_final_stats=1 \
    -dict="$here/$target.dict" -artifact_prefix="$build/tests/fuzz/" \
    "$corpus" "$here/corpus_$target" >"$log" 2>&1 || rc=$?
  grep -E "^stat::number_of_executed_units|ERROR|SUMMARY" "$log" || true
  if [ "$rc" -ne 0 ]; then
    echo "fuzz_$target failed (exit $rc); the input is in $build/tests/fuzz/"; tail -n 40 "$log"; exit 1
  fi
done
exit 0
