#!/usr/bin/env bash
# run.sh: the main job on the embedded defaults: pretrain the `small` DeepSeek-architecture model
# (16M parameters: MLA, 16-expert DeepSeekMoE, mHC, MTP, DSA indexer) on 2 CPU cores.
#   1. build dsc;
#   2. build the corpus from Debian/npm packages (scripts/corpus.sh) and train an 8K BPE tokenizer;
#   3. tokenize it, plus generated arithmetic and countdown problems, into shards;
#   4. train 800 steps (TRAIN_STEPS; about 11 minutes at 2,400 tokens/s) within a time limit
#      (TRAIN_MINUTES, default 13), printing loss, validation loss,
#      tokens/s and ETA, with checkpoints, metrics.jsonl and loss.svg in out/run;
#   5. print the validation loss against the unigram baseline, and samples.
# Everything lands in out/. Re-running resumes nothing: it starts a new run in out/run.
set -euo pipefail
cd "$(dirname "$0")"
minutes=${TRAIN_MINUTES:-13}
steps=${TRAIN_STEPS:-800}
bash scripts/deps.sh build
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
dsc=./build/dsc
mkdir -p out

echo "== corpus (Debian and npm packages)"
bash scripts/corpus.sh out/corpus
echo "== tokenizer"
$dsc tokenizer train --vocab-size 8192 --out out/tokenizer.json out/corpus/*.txt
echo "== data"
$dsc data prepare --tokenizer out/tokenizer.json --out out/data --synthetic arithmetic=20000,countdown=10000 \
  out/corpus/*.txt
echo "== training (at most $minutes minutes)"
rm -rf out/run
$dsc info --preset small | sed -n '1,7p'
$dsc train --data out/data --tokenizer out/tokenizer.json --out out/run --steps "$steps" \
  --time-limit "$minutes" --eval-every 100 --save-every 200 --log-every 20
echo "== samples"
$dsc sample --model out/run --prompt "The President" --max-tokens 60 --temperature 0.8 --seed 1
$dsc sample --model out/run --prompt "Whale, n." --max-tokens 40 --temperature 0.8 --seed 2
$dsc sample --model out/run --prompt "<｜User｜>What is 17 + 25?<｜Assistant｜>" --max-tokens 60 --temperature 0 --seed 3
echo "loss curve: out/run/loss.svg; metrics: out/run/metrics.jsonl"
