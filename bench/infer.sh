#!/usr/bin/env bash
# bench/infer.sh: dsc's inference against llama.cpp on the same GGUF files, in one run.
# Models (random weights: speed depends on shapes and routing, not on values; bench_random_gguf):
#   small    the `small` preset as llama.cpp can run it (no mHC, no DSA indexer), q8_0
#   v2-lite  DeepSeek-V2-Lite's shapes (15.7B parameters, 2.4B active), q4_0 (embedding, head and
#            attn_k_b/attn_v_b q8_0, as `dsc export --gguf --type q4_0` writes them)
# For each model and each thread count: llama-bench (pp512, tg64) and llama-batched-bench
# (128-token prompts, 32 generated tokens, 1, 4 and 16 sequences) against bench_infer measuring
# the same things; two alternating rounds, the best of each. Prints a table with the ratios
# dsc/llama.cpp and the decode bandwidth as a fraction of the DRAM bandwidth measured here.
#
# llama.cpp is not a dependency. Give its binaries with --llama DIR (a build holding llama-bench
# and llama-batched-bench), or --build-llama to build them from source: the llama.cpp source that
# node-llama-cpp (npm, version pinned below) ships as a git bundle, built with CMake into
# out/bench/llama.cpp.
# Usage: bash bench/infer.sh [--llama DIR | --build-llama] [--models small,v2-lite] [--threads 1,2]
set -euo pipefail
cd "$(dirname "$0")/.."
NODE_LLAMA_CPP=3.22.1
llama=""; build_llama=0; models="small,v2-lite"; threads="1,2"
while [ $# -gt 0 ]; do
  case "$1" in
    --llama) llama=$2; shift 2 ;;
    --build-llama) build_llama=1; shift ;;
    --models) models=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    *) echo "bench/infer.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
out=out/bench
mkdir -p "$out"
bash scripts/deps.sh build
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target dsc bench_infer bench_random_gguf >/dev/null

if [ "$build_llama" = 1 ]; then
  if [ ! -x "$out/llama.cpp/build/bin/llama-batched-bench" ]; then
    echo "== building llama.cpp from source (node-llama-cpp $NODE_LLAMA_CPP's bundle)"
    command -v git >/dev/null && command -v g++ >/dev/null || { echo "needs git and g++" >&2; exit 1; }
    rm -rf "$out/llama.cpp" && mkdir -p "$out/llama.cpp"
    (cd "$out/llama.cpp" && npm pack --silent "node-llama-cpp@$NODE_LLAMA_CPP" >/dev/null &&
       tar xzf node-llama-cpp-*.tgz package/llama/gitRelease.bundle &&
       git clone -q package/llama/gitRelease.bundle src && rm -rf package node-llama-cpp-*.tgz)
    cmake -S "$out/llama.cpp/src" -B "$out/llama.cpp/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
      -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
      -DLLAMA_BUILD_SERVER=OFF >/dev/null
    cmake --build "$out/llama.cpp/build" -j"$(nproc)" --target llama-bench llama-batched-bench >/dev/null
  fi
  llama=$out/llama.cpp/build/bin
fi
if [ -n "$llama" ] && [ ! -x "$llama/llama-bench" -o ! -x "$llama/llama-batched-bench" ]; then
  echo "bench/infer.sh: $llama has no llama-bench / llama-batched-bench" >&2; exit 1
fi
[ -n "$llama" ] || echo "(no llama.cpp given: dsc alone; see --llama / --build-llama)"

# a tokenizer for the GGUF files (llama.cpp refuses a file without one): the main job's, or train it
tok=out/tokenizer.json
if [ ! -f "$tok" ]; then
  bash scripts/corpus.sh out/corpus
  ./build/dsc tokenizer train --vocab-size 8192 --out "$tok" out/corpus/*.txt
fi

results=$out/results.jsonl
: > "$results"
IFS=, read -r -a model_list <<< "$models"
IFS=, read -r -a thread_list <<< "$threads"
for m in "${model_list[@]}"; do
  case "$m" in
    small) f=$out/small-plain-q8_0.gguf; args=(--preset small --plain --type q8_0) ;;
    v2-lite) f=$out/v2-lite-q4_0.gguf; args=(--preset deepseek-v2-lite --plain --type q4_0) ;;
    *) echo "bench/infer.sh: unknown model $m (small, v2-lite)" >&2; exit 2 ;;
  esac
  [ -f "$f" ] || ./build/bench/bench_random_gguf "${args[@]}" --tokenizer "$tok" "$f"
  echo "== $m: $f ($(du -h "$f" | cut -f1))"
  for round in 1 2; do
    for t in "${thread_list[@]}"; do
      tag="\"model\": \"$m\", \"threads\": $t, \"round\": $round"
      OMP_NUM_THREADS=$t ./build/bench/bench_infer "$f" --reps 1 --json | sed "s/^{/{$tag, /" >> "$results"
      if [ -n "$llama" ]; then
        "$llama/llama-bench" -m "$f" -p 512 -n 64 -t "$t" -r 1 -o jsonl 2>/dev/null |
          grep '^{' | sed "s/^{/{\"impl\": \"llama.cpp\", $tag, /" >> "$results"
        "$llama/llama-batched-bench" -m "$f" -c 2600 -b 2048 -ub 512 -npp 128 -ntg 32 -npl 1,4,16 -t "$t" -tb "$t" \
          --output-format jsonl 2>/dev/null | grep '^{' | sed "s/^{/{\"impl\": \"llama.cpp\", $tag, /" >> "$results"
      fi
    done
  done
done
/usr/bin/python3 bench/infer_table.py "$results"
