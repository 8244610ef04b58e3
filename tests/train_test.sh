#!/usr/bin/env bash
# train_test.sh DSC: `dsc train` end to end on the tiny preset:
#   1. the C trainer and the PyTorch reference trainer (tests/reference/train_ref.py), from the
#      same initial weights on the same batches, give the same losses (<= 1e-6 relative before
#      any expert selection can flip, <= 1e-3 after);
#   2. stopping and resuming gives bit-identical losses to an uninterrupted run;
#   3. a process killed with SIGKILL in the middle of a checkpoint save (and at random moments)
#      never damages the last good checkpoint, and the run resumes from it;
#   4. bad data and checkpoints give a one-line error and a non-zero exit code.
set -u
dsc=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
py=/usr/bin/python3
. "$here/lib.sh"
cd "$tmp"
run() { "$@" >"$tmp/log" 2>&1 || { echo "command failed: $*"; tail -n 20 "$tmp/log"; exit 1; }; }

# --- a tiny data set: generated arithmetic, a small tokenizer trained on it ---
run tiny_tokenizer "$dsc" "$py"
run "$dsc" data prepare --tokenizer tok.json --out data --val-fraction 0.1 --synthetic arithmetic=600
[ -f data/train.bin ] && [ -f data/val.bin ] && pass || fail "data prepare wrote train.bin and val.bin"

common=(--preset tiny --data data --tokenizer tok.json --batch 4 --seq 32 --lr 3e-3 --warmup 5 --eval-every 10
        --eval-batches 2 --log-every 100)

# --- 1. against the PyTorch reference trainer ---
run "$dsc" train "${common[@]}" --out ref --steps 20 --save-initial --save-every 0 --dump-batches batches.i32
"$py" "$here/reference/train_ref.py" ref/step-00000000 batches.i32 --steps 20 --json >ref_losses.json \
  || { fail "train_ref.py failed"; cat ref_losses.json; }
"$py" - <<'PY' && pass || fail "C and PyTorch loss curves differ"
import json
c = [json.loads(l)["loss"] for l in open("ref/metrics.jsonl") if '"loss"' in l]
r = json.load(open("ref_losses.json"))
assert len(c) == 20 and len(r) == 20, (len(c), len(r))
rel = [abs(a - b) / abs(b) for a, b in zip(c, r)]
print(f"C vs PyTorch trainer, 20 steps: loss {c[0]:.5f} -> {c[-1]:.5f}; worst relative difference "
      f"{max(rel[:6]):.2e} (steps 1-6), {max(rel):.2e} (all)")
# a wrong gradient shows from the first steps; later an expert selection may flip on round-off
assert max(rel[:6]) <= 1e-6 and max(rel) <= 1e-3, rel
PY

# 200 steps: the full tiny model's selections (MoE top-k, the DSA indexer's top-k, the sign of the
# bias update) are discontinuous, so fp32 round-off eventually flips one and the curves part
# (about 1% by step 200). Without them -- every expert selected, no indexer, no bias update, mHC
# and MTP kept -- the two trainers must stay together: within 1e-6 for 25 steps (a wrong
# gradient shows at once), within 1e-3 for all 200. The round-off of two fp32 summation orders
# still grows at lr 3e-3 on some data (2e-7 at step 200 on the earlier arithmetic traces, 1.2e-4
# on the current ones, after a gradient-norm spike at step 29), so the long bound is looser.
"$py" - ref/step-00000000/config.json smooth.json <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c.update(num_experts_per_tok=c["n_routed_experts"], n_group=1, topk_group=1, index_n_heads=0, bias_update_speed=0)
for k in ("index_head_dim", "index_topk", "index_rope_interleaved"):
    c.pop(k, None)
json.dump(c, open(sys.argv[2], "w"))
PY
run "$dsc" train --config smooth.json --data data --tokenizer tok.json --batch 4 --seq 32 --lr 3e-3 --warmup 20 \
  --eval-every 0 --eval-batches 2 --log-every 1000 --out smooth --steps 200 --save-initial --save-every 0 \
  --dump-batches smooth.i32
"$py" "$here/reference/train_ref.py" smooth/step-00000000 smooth.i32 --steps 200 --json >smooth_losses.json \
  || fail "train_ref.py failed on the smooth model"
"$py" - <<'PY' && pass || fail "C and PyTorch 200-step loss curves differ (smooth model)"
import json
c = [json.loads(l)["loss"] for l in open("smooth/metrics.jsonl") if '"loss"' in l]
r = json.load(open("smooth_losses.json"))
assert len(c) == 200 and len(r) == 200, (len(c), len(r))
rel = [abs(a - b) / abs(b) for a, b in zip(c, r)]
print(f"C vs PyTorch trainer, 200 steps, no discontinuous selections: loss {c[0]:.5f} -> {c[-1]:.5f}; "
      f"worst relative difference {max(rel[:25]):.2e} (steps 1-25), {max(rel):.2e} (all)")
assert max(rel[:25]) <= 1e-6 and max(rel) <= 1e-3, rel
PY

# --- 2. resume is bit-identical ---
run "$dsc" train "${common[@]}" --out full --steps 16 --save-every 8 --keep 5
run "$dsc" train "${common[@]}" --out half --steps 16 --save-every 8 --keep 5
rm -rf half/step-00000016
run "$dsc" train "${common[@]}" --out half --steps 16 --save-every 8 --keep 5 --resume
if cmp -s <(grep '"loss"' full/metrics.jsonl | sed 's/"tokens_per_s[^,]*, "elapsed_s[^}]*//') \
          <(grep '"loss"' half/metrics.jsonl | sed 's/"tokens_per_s[^,]*, "elapsed_s[^}]*//'); then pass
else fail "resumed losses differ from the uninterrupted run"; diff <(grep '"loss"' full/metrics.jsonl) <(grep '"loss"' half/metrics.jsonl) | head; fi
cmp -s full/step-00000016/model.safetensors half/step-00000016/model.safetensors && pass \
  || fail "resumed final weights differ from the uninterrupted run"

# --- 3. SIGKILL during a save, and at random moments ---
DSC_TEST_KILL_IN_SAVE=8 "$dsc" train "${common[@]}" --out killed --steps 16 --save-every 4 --keep 5 >/dev/null 2>&1
[ $? -eq 137 ] && pass || fail "the save of step 8 was killed (exit 137)"
[ -d killed/step-00000004 ] && [ ! -d killed/step-00000008 ] && pass || fail "step 4 kept, step 8 not published"
run "$dsc" train "${common[@]}" --out killed --steps 16 --save-every 4 --keep 5 --resume
cmp -s full/step-00000016/model.safetensors killed/step-00000016/model.safetensors && pass \
  || fail "a run killed mid-save and resumed ends with different weights"
has_ckpt() { ls -d random/step-* >/dev/null 2>&1 && echo --resume; }
for i in 1 2 3 4 5; do
  "$dsc" train "${common[@]}" --out random --steps 24 --save-every 2 --keep 2 $(has_ckpt) \
    >/dev/null 2>&1 &
  pid=$!
  sleep "0.$((RANDOM % 9 + 1))"
  kill -9 $pid 2>/dev/null
  wait $pid 2>/dev/null
  latest=$(ls -d random/step-* 2>/dev/null | tail -n 1)
  if [ -n "$latest" ]; then
    "$dsc" forward --model "$latest" --tokens 1,2,3 --out /dev/null >/dev/null 2>&1 && pass \
      || fail "checkpoint $latest is damaged after kill -9 (round $i)"
  fi
done
run "$dsc" train "${common[@]}" --out random --steps 24 --save-every 2 --keep 2 $(has_ckpt)
[ -d random/step-00000024 ] && pass || fail "training finished after the kills"

# Ctrl-C (SIGINT) finishes the step, saves a checkpoint of it and exits cleanly.
"$dsc" train "${common[@]}" --out interrupted --steps 100000 --save-every 0 >sigint.log 2>&1 &
pid=$!
for _ in $(seq 1 100); do grep -q "^step " sigint.log 2>/dev/null && break; sleep 0.1; done
kill -INT $pid
wait $pid
rc=$?
last=$(ls -d interrupted/step-* 2>/dev/null | tail -n 1)
if [ $rc -eq 0 ] && grep -q "^stopped after" sigint.log && [ -n "$last" ] && \
   "$dsc" forward --model "$last" --tokens 1,2,3 --out /dev/null >/dev/null 2>&1; then pass
else fail "Ctrl-C: exit $rc, checkpoint '$last': $(tail -n 2 sigint.log)"; fi

# --- 4. bad input: one line, non-zero exit ---
mkdir -p bad && cp data/* bad/
head -c 100 data/train.bin >bad/train.bin
expect_fail 1 train.bin -- "$dsc" train "${common[@]}" --data bad --out b1 --steps 2
: >bad/train.bin
expect_fail 1 train.bin -- "$dsc" train "${common[@]}" --data bad --out b2 --steps 2
cp data/train.bin bad/train.bin
printf 'XXXXXXXX' | dd of=bad/train.bin bs=1 seek=0 conv=notrunc 2>/dev/null
expect_fail 1 train.bin -- "$dsc" train "${common[@]}" --data bad --out b3 --steps 2
rm bad/val.bin
cp data/train.bin bad/train.bin
expect_fail 1 val.bin -- "$dsc" train "${common[@]}" --data bad --out b4 --steps 2
run "$dsc" tokenizer train --vocab-size 300 --out tok2.json corpus.txt
run "$dsc" data prepare --tokenizer tok2.json --out data2 --synthetic arithmetic=200
expect_fail 1 tokenizer -- "$dsc" train "${common[@]}" --data data2 --out full --steps 20 --resume
expect_fail 1 batch -- "$dsc" train "${common[@]}" --out full --steps 20 --resume --batch 2
cp -r full/step-00000016 fullcopy
rm -rf full/step-000000*
mkdir full/step-00000016 && cp fullcopy/* full/step-00000016/
echo '{"format": "dsc-checkpoint-1"}' >full/step-00000016/state.json
expect_fail 1 state.json -- "$dsc" train "${common[@]}" --out full --steps 20 --resume
cp fullcopy/state.json full/step-00000016/
head -c 1000 fullcopy/optimizer.safetensors >full/step-00000016/optimizer.safetensors
expect_fail 1 optimizer.safetensors -- "$dsc" train "${common[@]}" --out full --steps 20 --resume
cp fullcopy/optimizer.safetensors full/step-00000016/
head -c 1000 fullcopy/model.safetensors >full/step-00000016/model.safetensors
expect_fail 1 model.safetensors -- "$dsc" train "${common[@]}" --out full --steps 20 --resume
expect_fail 1 "no checkpoint" -- "$dsc" train "${common[@]}" --out nothing-here --steps 20 --resume

finish train_test
