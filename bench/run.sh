#!/usr/bin/env bash
# bench/run.sh: dsc's benchmarks, each next to its peer measured in the same run.
#   matmul      dsc_sgemm on the model's shapes vs OpenBLAS, and the machine's fp32 FMA peak
#   train_step  forward + backward + AdamW on the small preset vs the same step in PyTorch
# Usage: bench/run.sh [matmul|train_step|all]   (env: B, T, STEPS override the batch)
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
bash scripts/deps.sh bench
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target bench_matmul bench_train_step >/dev/null
export OPENBLAS_CORETYPE=SkylakeX   # Debian's OpenBLAS mis-detects this CPU without it

if [ "$what" = matmul ] || [ "$what" = all ]; then
  echo "== matrix multiply"
  ./build/bench/bench_matmul
fi

if [ "$what" = train_step ] || [ "$what" = all ]; then
  B=${B:-8}; T=${T:-256}; STEPS=${STEPS:-6}
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
  echo "== training step: small preset, batch $B x $T, $STEPS timed steps after 2 warm-up (best of 2 alternating runs)"
  for round in 1 2; do
    ./build/bench/bench_train_step --batch "$B" --seq "$T" --steps "$STEPS" --model-out "$out/model" \
      --batch-out "$out/batch.i32" --json >> "$out/dsc.jsonl"
    for th in 2 1; do
      /usr/bin/python3 bench/train_step.py "$out/model" "$out/batch.i32" --batch "$B" --seq "$T" \
        --steps "$STEPS" --threads "$th" --json >> "$out/torch$th.jsonl"
    done
  done
  /usr/bin/python3 - "$out" <<'PY'
import json, sys
d = sys.argv[1]
def best(name):
    rows = [json.loads(l) for l in open(f"{d}/{name}.jsonl")]
    return min(rows, key=lambda r: r["step_s"])
c, t2, t1 = best("dsc"), best("torch2"), best("torch1")
tb = min((t2, t1), key=lambda r: r["step_s"])
print(f"{'':28}{'step s':>9}{'tokens/s':>11}{'max RSS MiB':>13}{'loss first->last':>20}")
for name, r in (("dsc (2 threads)", c), ("PyTorch 2 threads", t2), ("PyTorch 1 thread", t1)):
    print(f"{name:28}{r['step_s']:9.3f}{r['tokens_per_s']:11.0f}{r['max_rss_mb']:13.0f}"
          f"{r['first_loss']:10.4f}->{r['last_loss']:.4f}")
print(f"\ndsc / best PyTorch: {c['tokens_per_s'] / tb['tokens_per_s']:.2f}x tokens/s "
      f"(vs 2 threads {c['tokens_per_s'] / t2['tokens_per_s']:.2f}x, vs 1 thread {c['tokens_per_s'] / t1['tokens_per_s']:.2f}x)")
print(f"dsc: {c['gflops']:.1f} GFLOP/s model FLOPs = {100 * c['gflops'] / c['peak_gflops']:.1f}% of the "
      f"{c['peak_gflops']:.1f} GFLOP/s fp32 FMA peak; inside matmuls {c['gemm_gflops']:.1f} GFLOP/s = "
      f"{100 * c['gemm_gflops'] / c['peak_gflops']:.1f}% of peak ({100 * c['gemm_fraction_of_step']:.0f}% of the step)")
print(f"PyTorch {t2['torch']}: 1024^3 matmul {t2['matmul_1024_gflops']:.1f} GFLOP/s "
      f"(OPENBLAS_CORETYPE={t2['openblas_coretype'] or 'unset'})")
print(f"same weights, same batch: first-step loss dsc {c['first_loss']:.5f} vs PyTorch {t2['first_loss']:.5f}")
PY
fi
