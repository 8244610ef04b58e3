#!/usr/bin/env bash
# grpo_test.sh DSC: `dsc grpo` and `dsc eval` end to end on the tiny preset:
#   1. a tiny model taught the <think> format by a short `dsc sft` runs GRPO on a JSONL task:
#      metrics (reward, accuracy, length, KL, clip fraction, entropy, rollout/update tokens/s,
#      held-out accuracy), checkpoints and the plot are written, and the weights change;
#   2. stopping after 2 steps and resuming to 4 gives bit-identical metrics and weights to an
#      uninterrupted 4-step run (problems and samples are a function of the step);
#   3. the checkpoint loads in `dsc eval` and `dsc generate`; --beta > 0 (reference model), μ > 1
#      (old log-probabilities) and the other aggregations run;
#   4. bad input gives a one-line error and a non-zero exit code.
set -u
dsc=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
py=/usr/bin/python3
. "$here/lib.sh"
cd "$tmp"
run() { "$@" >"$tmp/log" 2>&1 || { echo "command failed: $*"; tail -n 20 "$tmp/log"; exit 1; }; }

# --- a tiny model that has seen the format: tokenizer on arithmetic, SFT on 8 problems ---
run tiny_tokenizer "$dsc" "$py" --max-digits 1
run tiny_model "$dsc" "$py" base
head -n 8 corpus.jsonl > tasks.jsonl
run "$dsc" sft --model base --data tasks.jsonl --val-fraction 0 --out sft --steps 60 --batch 8 --seq 128 --lr 3e-3 \
  --warmup 5 --log-every 60

common=(--task jsonl --data tasks.jsonl --prompts 2 --group 4 --max-new-tokens 40 --max-prompt-tokens 48
        --eval-n 8 --eval-every 2 --save-every 2 --lr 1e-3 --warmup 0 --no-dynamic-sampling --seed 7)

# --- 1. a run: metrics, checkpoints, plot, the weights move ---
run "$dsc" grpo --model sft --out a "${common[@]}" --steps 4
cp "$tmp/log" a.log
[ -f a/step-00000004/model.safetensors ] && pass || fail "no checkpoint after 4 steps"
[ -s a/grpo.svg ] && pass || fail "no plot"
"$py" - a/metrics.jsonl <<'PY' && pass || fail "metrics.jsonl lacks fields"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
steps = [l for l in lines if "reward" in l]
evals = [l for l in lines if "eval_accuracy" in l]
need = ["reward", "accuracy", "format", "length", "kl", "clip_frac", "entropy", "nll", "rollout_tok_s",
        "decode_tok_s", "update_tok_s", "groups_kept", "grad_norm"]
assert [s["step"] for s in steps] == [1, 2, 3, 4], steps
assert all(k in s for s in steps for k in need)
assert [e["step"] for e in evals] == [0, 2, 4], evals
assert all(0 <= e["eval_accuracy"] <= 1 for e in evals)
assert any(s["grad_norm"] > 0 for s in steps), "no gradient at all: rewards never differed"
PY
grep -q "held-out accuracy" a.log && pass || fail "no held-out accuracy line"
cmp -s sft/step-00000060/model.safetensors a/step-00000004/model.safetensors && fail "weights unchanged" || pass

# --- 2. stop at 2, resume to 4: bit-identical ---
run "$dsc" grpo --model sft --out b "${common[@]}" --steps 2
run "$dsc" grpo --model sft --out b "${common[@]}" --steps 4 --resume
cmp -s a/step-00000004/model.safetensors b/step-00000004/model.safetensors && pass ||
  fail "resumed weights differ from the uninterrupted run"
"$py" - a/metrics.jsonl b/metrics.jsonl <<'PY' && pass || fail "resumed metrics differ"
import json, sys
def load(p):
    drop = ("elapsed", "rollout_s", "update_s", "rollout_tok_s", "decode_tok_s", "update_tok_s", "eval_tok_s")
    return [{k: v for k, v in json.loads(l).items() if k not in drop} for l in open(p)]
a, b = load(sys.argv[1]), load(sys.argv[2])
assert a == b, (a, b)
PY
expect_fail 1 "lr" -- "$dsc" grpo --model sft --out b "${common[@]}" --steps 6 --resume --lr 2e-3

# --- 3. the checkpoint loads; the options that keep other state run ---
run "$dsc" eval --model a --task jsonl --data tasks.jsonl --n 8 --max-new-tokens 40 --temperature 1.5 --samples 3 \
  --dump dump.jsonl
grep -q "accuracy" "$tmp/log" && pass || fail "dsc eval printed no accuracy"
# the dump: one line per completion (8 problems x 3 samples), in problem order, its flags the
# printed accuracy's, its answers those of the task file
"$py" - "$tmp/log" <<'PY' && pass || fail "dsc eval --dump"
import json, re, sys
rows = [json.loads(l) for l in open("dump.jsonl")]
tasks = [json.loads(l) for l in open("tasks.jsonl")]
assert len(rows) == 24, len(rows)
assert [r["answer"] for r in rows] == [t["answer"] for t in tasks for _ in range(3)]
acc = float(re.search(r"accuracy ([0-9.]+)%", open(sys.argv[1]).read()).group(1))
assert abs(100 * sum(r["correct"] for r in rows) / 24 - acc) < 0.06, acc
assert all(isinstance(r["completion"], str) and r["formatted"] <= r["finished"] for r in rows)
PY
expect_fail 1 "no/such/dir" -- "$dsc" eval --model a --task jsonl --data tasks.jsonl --n 2 --dump no/such/dir/x.jsonl
run "$dsc" generate --model a/step-00000004 --prompt "What is 1 + 2?" --max-tokens 4
run "$dsc" grpo --model sft --out c "${common[@]}" --steps 2 --beta 0.04 --minibatches 2 --agg sequence
"$py" -c "
import json
s = [json.loads(l) for l in open('c/metrics.jsonl')]
s = [x for x in s if 'reward' in x]
assert s[-1]['kl'] >= 0 and all(0 <= x['clip_frac'] <= 1 for x in s), s
" && pass || fail "beta/minibatch run metrics"
run "$dsc" grpo --model sft --out d "${common[@]}" --steps 1 --agg constant --no-std --eps-high 0.2
pass

# --- 4. bad input ---
expect_fail 2 "--data" -- "$dsc" grpo --model sft --out e --task jsonl
expect_fail 1 "nope.jsonl" -- "$dsc" grpo --model sft --out e --task jsonl --data nope.jsonl
printf '{"prompt": "x", "answer": "1", "checker": "arithmetic"}\n{"prompt": 5}\n' > bad.jsonl
expect_fail 1 "bad.jsonl:2" -- "$dsc" grpo --model sft --out e --task jsonl --data bad.jsonl
expect_fail 2 "group" -- "$dsc" grpo --model sft --out e --group 1
expect_fail 1 "missing" -- "$dsc" grpo --model missing --out e
expect_fail 2 "agg" -- "$dsc" grpo --model sft --out e --agg mean
expect_fail 1 "max-prompt-tokens" -- "$dsc" grpo --model sft --out e "${common[@]}" --max-prompt-tokens 2
expect_fail 2 "task" -- "$dsc" eval --model sft --task poetry
finish grpo_test
