#!/usr/bin/env bash
# rl.sh: the DeepSeek-R1 recipe at small scale, after run.sh has pretrained out/run:
#   1. cold start: `dsc sft` on generated worked problems (loss on the assistant tokens only);
#   2. `dsc grpo` on the same task (rule-based rewards, held-out accuracy every 10 steps).
# For arithmetic (1-2 digit operands) and then countdown (3-4 numbers). Each stage has a time
# limit (minutes): SFT_MINUTES (10), GRPO_MINUTES (30), COUNTDOWN_GRPO_MINUTES (15).
# Output: out/rl/{arith,countdown}/{sft,grpo}; the GRPO plots are out/rl/*/grpo/grpo.svg.
set -euo pipefail
cd "$(dirname "$0")/.."
dsc=./build/dsc
sft_min=${SFT_MINUTES:-10}
grpo_min=${GRPO_MINUTES:-30}
cd_grpo_min=${COUNTDOWN_GRPO_MINUTES:-15}
test -d out/run || { echo "rl.sh: run run.sh first (it pretrains out/run)" >&2; exit 1; }
mkdir -p out/rl
# The GRPO settings of docs/RESULTS.md: Dr. GRPO advantages (no std division), no format reward
# (the cold start already taught it; with one, format-only differences dominated and shortened
# the reasoning), KL 0.04 to the SFT model, rollouts at temperature 0.7 (the loss uses the same
# tempered policy), two optimizer steps per rollout batch, held-out greedy accuracy and pass@1.
grpo_opts=(--prompts 8 --group 8 --minibatches 2 --lr 5e-5 --beta 0.04 --no-std --format-reward 0
           --temperature 0.7 --max-new-tokens 200 --eval-every 10 --eval-n 200 --eval-samples 2 --steps 1000)

echo "== arithmetic: cold-start SFT ($sft_min min)"
$dsc data synth --task arithmetic --n 30000 --max-digits 2 --seed 11 --jsonl out/rl/arith_sft.jsonl
rm -rf out/rl/arith
$dsc sft --model out/run --data out/rl/arith_sft.jsonl --out out/rl/arith/sft --steps 400 --batch 16 --seq 256 \
  --lr 1e-3 --warmup 20 --eval-every 100 --eval-batches 8 --save-every 100 --log-every 20 --time-limit "$sft_min"
echo "== arithmetic: GRPO ($grpo_min min)"
$dsc grpo --model out/rl/arith/sft --out out/rl/arith/grpo --task arithmetic --max-digits 2 \
  "${grpo_opts[@]}" --time-limit "$grpo_min"

echo "== countdown: cold-start SFT ($sft_min min)"
$dsc data synth --task countdown --n 20000 --max-numbers 4 --seed 11 --jsonl out/rl/countdown_sft.jsonl
rm -rf out/rl/countdown
$dsc sft --model out/run --data out/rl/countdown_sft.jsonl --out out/rl/countdown/sft --steps 400 --batch 16 \
  --seq 256 --lr 1e-3 --warmup 20 --eval-every 100 --eval-batches 8 --save-every 100 --log-every 20 \
  --time-limit "$sft_min"
echo "== countdown: GRPO ($cd_grpo_min min)"
$dsc grpo --model out/rl/countdown/sft --out out/rl/countdown/grpo --task countdown --max-numbers 4 \
  "${grpo_opts[@]}" --time-limit "$cd_grpo_min"
echo "plots: out/rl/arith/grpo/grpo.svg out/rl/countdown/grpo/grpo.svg"
