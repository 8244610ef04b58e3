#!/usr/bin/env bash
# run.sh: the main job on the embedded defaults. Today: build dsc, show the small preset, write a
# randomly initialised small model, run it forward, then train it for a few steps on a fixed
# batch and time that step against the same step in PyTorch (bench/run.sh train_step).
# (Pretraining on real data, `dsc train`, is the next milestone.)
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/deps.sh bench
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
./build/dsc info --preset small
mkdir -p out
./build/dsc init --preset small --out out/small --seed 1
./build/dsc forward --model out/small --tokens 1,2,3,4,5,6,7,8 --out out/small/logits.f32
bash bench/run.sh train_step
