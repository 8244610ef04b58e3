#!/usr/bin/env bash
# sft_test.sh DSC: `dsc sft` end to end on the tiny preset:
#   1. the loss counts exactly the assistant tokens: the batches it trains on (--dump-batches) are
#      compared with the chat template rendered independently here in Python and tokenized by
#      `dsc tokenize` (multi-turn, system, <think>, problem lines); the reported token counts equal
#      the assistant tokens counted from `dsc data synth --render` documents;
#   2. the loss falls on a tiny repeated data set (overfit);
#   3. stopping and resuming gives bit-identical losses and weights to an uninterrupted run;
#   4. checkpoints load in `dsc generate` and as the --model of another `dsc sft`;
#   5. bad input (malformed JSON, a missing field, an empty file, an unknown role, ...) gives a
#      one-line error naming the file, line and field, and a non-zero exit code.
set -u
dsc=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
py=/usr/bin/python3
. "$here/lib.sh"
cd "$tmp"
run() { "$@" >"$tmp/log" 2>&1 || { echo "command failed: $*"; tail -n 20 "$tmp/log"; exit 1; }; }

# --- a tokenizer trained on generated arithmetic, a tiny model with its vocabulary ---
run tiny_tokenizer "$dsc" "$py" --max-digits 2
run tiny_model "$dsc" "$py" base

# --- 1. exactly the assistant tokens are targets ---
# Conversations in both forms; the template rendered here (not by dsc) with the assistant spans.
"$py" - "$dsc" <<'PY'
import json, subprocess, sys
dsc = sys.argv[1]
BOS, EOS, USER, ASSIST = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>"
convs = [
    {"messages": [{"role": "user", "content": "What is 3 + 4?"},
                  {"role": "assistant", "content": "<think>\n3 + 4 = 7\n</think>\n7"}]},
    {"messages": [{"role": "system", "content": "You add numbers."},
                  {"role": "user", "content": "What is 12 + 9?"},
                  {"role": "assistant", "content": "21"},
                  {"role": "user", "content": "And 21 - 5?"},
                  {"role": "assistant", "content": "<think>\n21 - 5 = 16\n</think>\n16"}]},
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "system", "content": "Think first."},
                  {"role": "user", "content": "Say \"héllo\" — twice."},
                  {"role": "assistant", "content": "héllo héllo"}, {"role": "user", "content": "thanks"}]},
    {"messages": [{"role": "user", "content": "empty answer please"}, {"role": "assistant", "content": ""}]},
    {"prompt": "What is 5 * 6?", "answer": "30", "reasoning": "5 * 6 = 30\nanswer: 5 * 6 = 30", "checker": "arithmetic"},
    {"prompt": "What is 2 - 9?", "answer": "-7", "extra": [1, 2, 3]},
]
def render(c):
    """(text, assistant spans as character offsets [start, end))"""
    if "messages" in c:
        ms = c["messages"]
        text = BOS + "\n\n".join(m["content"] for m in ms if m["role"] == "system")
        spans = []
        for m in ms:
            if m["role"] == "user":
                text += USER + m["content"]
            elif m["role"] == "assistant":
                text += ASSIST
                s = len(text)
                text += m["content"] + EOS
                spans.append((s, len(text)))
        return text, spans
    reply = ("<think>\n" + c["reasoning"] + "\n</think>\n" if c.get("reasoning") else "") + c["answer"]
    text = BOS + USER + c["prompt"] + ASSIST
    s = len(text)
    text += reply + EOS
    return text, [(s, len(text))]
def tokenize(text):
    out = subprocess.run([dsc, "tokenize", "--tokenizer", "tok.json", "-"], input=text.encode(), capture_output=True,
                         check=True).stdout.split()
    return [int(x) for x in out]
expect = []
for c in convs:
    text, spans = render(c)
    ids = tokenize(text)
    mask = [0] * len(ids)
    for s, e in spans:  # special tokens split the text, so prefixes tokenize to exact boundaries
        a, b = len(tokenize(text[:s])), len(tokenize(text[:e]))
        for i in range(a, b):
            mask[i] = 1
    expect.append({"ids": ids, "mask": mask})
with open("convs.jsonl", "w") as f:
    for c in convs:
        f.write(json.dumps(c, ensure_ascii=False) + "\n")
        f.write("\n")  # blank lines are ignored
json.dump(expect, open("convs_expect.json", "w"))
PY
run "$dsc" sft --model base --data convs.jsonl --val-fraction 0 --out exact --batch 2 --steps 3 --seq 255 \
  --lr 1e-3 --warmup 0 --dump-batches exact.i32 --save-every 0
"$py" - <<'PY' && pass || fail "the batches' targets are not exactly the assistant tokens"
import json, struct
expect = json.load(open("convs_expect.json"))
pad = 2  # the trained tokenizer's PAD
raw = open("exact.i32", "rb").read()
rows, off = [], 0
while off < len(raw):
    B, T = struct.unpack_from("<2i", raw, off); off += 8
    tok = struct.unpack_from("<%di" % (B * T), raw, off); off += 4 * B * T
    tgt = struct.unpack_from("<%di" % (B * T), raw, off); off += 4 * B * T
    rows += [(tok[b * T:(b + 1) * T], tgt[b * T:(b + 1) * T]) for b in range(B)]
assert len(rows) == len(expect), (len(rows), len(expect))
seen = set()
for tok, tgt in rows:
    T = len(tok)
    hits = []
    for k, e in enumerate(expect):
        ids, mask = e["ids"], e["mask"]
        n = len(ids) - 1
        want_tok = ids[:-1] + [pad] * (T - n)
        want_tgt = [ids[t + 1] if mask[t + 1] else -1 for t in range(n)] + [-1] * (T - n)
        if list(tok) == want_tok and list(tgt) == want_tgt:
            hits.append(k)
    assert len(hits) == 1, ("no exact match for a row", tok, tgt)
    seen.add(hits[0])
assert len(seen) == len(expect)
counted = sum(json.loads(l)["targets"] for l in open("exact/metrics.jsonl") if '"loss"' in l)
want = sum(sum(e["mask"][1:]) for e in expect)
assert counted == want, (counted, want)
print(f"{len(rows)} conversations: tokens and targets match the independent rendering; {counted} assistant tokens")
PY

# Problems from `dsc data synth`: the tokens trained on are those of the rendered document, and the
# reported counts are its tokens after <｜Assistant｜>; longer ones are cut and counted.
run "$dsc" data synth --task arithmetic --n 24 --seed 11 --max-digits 1 --jsonl p24.jsonl
run "$dsc" data synth --task arithmetic --n 24 --seed 11 --max-digits 1 --render --jsonl p24.txt
"$py" - "$dsc" <<'PY'
import json, subprocess, sys
text = open("p24.txt", encoding="utf-8").read()
assert text.endswith("\n")
docs = text[:-1].split("\n\f\n")  # documents separated by form-feed lines, the file ends with a newline
assert len(docs) == 24, len(docs)
lens, targets = [], 0
for d in docs:
    ids = [int(x) for x in subprocess.run([sys.argv[1], "tokenize", "--tokenizer", "tok.json", "-"], input=d.encode(),
                                          capture_output=True, check=True).stdout.split()]
    lens.append(len(ids))
    targets += len(ids) - ids.index(4) - 1  # <｜Assistant｜> is 4: everything after it is a target
json.dump({"lens": lens, "targets": targets}, open("p24_expect.json", "w"))
PY
run "$dsc" sft --model base --data p24.jsonl --val-fraction 0 --out p24 --batch 4 --steps 6 --seq 255 --warmup 0 \
  --save-every 0 --dump-batches p24.i32
"$py" - <<'PY' && pass || fail "reported assistant-token count differs from the rendered documents"
import json
e = json.load(open("p24_expect.json"))
got = sum(json.loads(l)["targets"] for l in open("p24/metrics.jsonl") if '"loss"' in l)
assert got == e["targets"], (got, e["targets"])
PY
# Token-budget batches: each epoch has every conversation exactly once (batches never span two
# epochs), rows x longest stays within the budget (a batch of one may exceed it), and the epoch
# holds fewer padded tokens than the fixed batches of 4 above.
run "$dsc" sft --model base --data p24.jsonl --val-fraction 0 --out p24b --batch-tokens 300 --steps 40 --seq 255 \
  --warmup 0 --save-every 0 --dump-batches p24b.i32
"$py" - <<'PY' && pass || fail "token-budget batches"
import struct
def batches(path):
    raw, off, out = open(path, "rb").read(), 0, []
    while off < len(raw):
        B, T = struct.unpack_from("<2i", raw, off); off += 8
        tok = struct.unpack_from("<%di" % (B * T), raw, off); off += 8 * B * T
        rows = [tuple(tok[b * T:(b + 1) * T]) for b in range(B)]
        out.append((B, T, [r[:max(i for i, x in enumerate(r) if x != 2) + 1] for r in rows]))  # 2: PAD
    return out
fixed, budget = batches("p24.i32"), batches("p24b.i32")
epoch = sorted(r for _, _, rows in fixed for r in rows)
assert len(epoch) == 24
assert all(B * T <= 300 or B == 1 for B, T, _ in budget), [(B, T) for B, T, _ in budget]
seen, pad, epochs = [], 0, 0
for B, T, rows in budget:
    seen += rows
    pad += B * T
    assert len(seen) <= 24, "a batch spans two epochs"
    if len(seen) == 24:
        assert sorted(seen) == epoch, "an epoch is not every conversation once"
        if epochs == 0:
            fixed_pad = sum(B * T for B, T, _ in fixed)
            print(f"one epoch of 24 conversations: {pad} padded tokens in token-budget batches, {fixed_pad} in batches of 4")
            assert pad < fixed_pad
        seen, pad, epochs = [], 0, epochs + 1
assert epochs >= 2, epochs
PY
seq_cut=$("$py" -c "import json; l = json.load(open('p24_expect.json'))['lens']; print(sorted(l)[len(l) // 2] - 1)")
n_cut=$("$py" -c "import json; print(sum(n > $seq_cut + 1 for n in json.load(open('p24_expect.json'))['lens']))")
run "$dsc" sft --model base --data p24.jsonl --val-fraction 0 --out cut --batch 4 --steps 2 --seq "$seq_cut" --save-every 0
grep -q "$n_cut truncated, 0 left out" log && pass || fail "expected '$n_cut truncated': $(grep -i truncated log)"
run "$dsc" sft --model base --data p24.jsonl --val-fraction 0 --out skip --batch 4 --steps 2 --seq "$seq_cut" \
  --too-long skip --save-every 0
grep -q "0 truncated, $n_cut left out" log && pass || fail "expected '$n_cut left out': $(grep -i truncated log)"

# --- 2. overfit a tiny repeated set ---
head -n 8 p24.jsonl >p8.jsonl
run "$dsc" sft --model base --data p8.jsonl --val-fraction 0 --out overfit --batch 8 --steps 60 --seq 255 --lr 1e-2 \
  --warmup 5 --save-every 0
"$py" - <<'PY' && pass || fail "the loss did not fall on a repeated data set"
import json
ce = [json.loads(l)["ce"] for l in open("overfit/metrics.jsonl") if '"loss"' in l]
first, last = ce[0], sum(ce[-5:]) / 5
print(f"overfit on 8 conversations, 60 steps: assistant-token loss {first:.3f} -> {last:.3f}")
assert last < 0.4 * first, (first, last)
PY

# --- 3. resume is bit-identical (across an epoch boundary, with validation) ---
common=(--model base --data p24.jsonl --val-fraction 0.2 --batch 3 --seq 255 --lr 3e-3 --warmup 3 --eval-every 4
        --log-every 100 --keep 5)
run "$dsc" sft "${common[@]}" --out full --steps 16 --save-every 7
run "$dsc" sft "${common[@]}" --out half --steps 16 --save-every 7
rm -rf half/step-00000016 half/step-00000014
run "$dsc" sft "${common[@]}" --out half --steps 16 --save-every 7 --resume
strip() { sed 's/, "tokens_per_s[^,]*, "elapsed_s[^}]*//' "$1"; }
if cmp -s <(strip full/metrics.jsonl) <(strip half/metrics.jsonl); then pass
else fail "resumed losses differ from the uninterrupted run"; diff <(strip full/metrics.jsonl) <(strip half/metrics.jsonl) | head; fi
grep -q '"val_loss"' full/metrics.jsonl && [ -f full/loss.svg ] && pass || fail "validation lines and loss.svg written"
cmp -s full/step-00000016/model.safetensors half/step-00000016/model.safetensors && pass \
  || fail "resumed final weights differ from the uninterrupted run"
expect_fail 1 batch -- "$dsc" sft "${common[@]}" --out half --steps 20 --resume --batch 2
expect_fail 1 batch_tokens -- "$dsc" sft "${common[@]}" --out half --steps 20 --resume --batch-tokens 300
# the same with token-budget batches (several epochs in 16 steps)
run "$dsc" sft "${common[@]}" --batch-tokens 250 --out fullb --steps 16 --save-every 7
run "$dsc" sft "${common[@]}" --batch-tokens 250 --out halfb --steps 16 --save-every 7
rm -rf halfb/step-00000016 halfb/step-00000014
run "$dsc" sft "${common[@]}" --batch-tokens 250 --out halfb --steps 16 --save-every 7 --resume
cmp -s <(strip fullb/metrics.jsonl) <(strip halfb/metrics.jsonl) && \
  cmp -s fullb/step-00000016/model.safetensors halfb/step-00000016/model.safetensors && pass \
  || fail "token-budget batches: resumed losses or weights differ from the uninterrupted run"
expect_fail 1 data_hash -- "$dsc" sft "${common[@]}" --out half --steps 20 --resume --data p8.jsonl

# --- 4. checkpoints load elsewhere; time limit and Ctrl-C stop with a checkpoint ---
run "$dsc" generate --model full/step-00000016 --prompt "<｜User｜>What is 1 + 2?<｜Assistant｜>" --max-tokens 4 \
  --temperature 0
pass
run "$dsc" sft --model full --data p8.jsonl --val-fraction 0 --out chained --steps 2 --batch 2 --seq 255
grep -q "model full/step-00000016" log && [ -d chained/step-00000002 ] && pass || fail "--model OUT takes its newest checkpoint"
run "$dsc" sft --model base --data p24.jsonl --out timed --steps 100000 --batch 2 --seq 255 --time-limit 0.0001
grep -q "^stopped after 1 steps" log && [ -d timed/step-00000001 ] && pass || fail "--time-limit stops with a checkpoint"
"$dsc" sft --model base --data p24.jsonl --out interrupted --steps 100000 --batch 2 --seq 255 --save-every 0 \
  --log-every 1 >sigint.log 2>&1 &
pid=$!
for _ in $(seq 1 100); do grep -q "^step .*loss" sigint.log 2>/dev/null && break; sleep 0.1; done
kill -INT $pid
wait $pid
rc=$?
last=$(ls -d interrupted/step-* 2>/dev/null | tail -n 1)
[ $rc -eq 0 ] && grep -q "^stopped after" sigint.log && [ -n "$last" ] && pass || fail "Ctrl-C: exit $rc, '$last'"

# --- 5. bad input: one line naming file:line and field, exit 1 ---
sft() { "$dsc" sft --model base --out bad --steps 1 --batch 2 --seq 255 "$@"; }
good=$(head -n 1 p24.jsonl)
printf '%s\n%s\n{"prompt": "What is 1 + 1?", "answer": \n' "$good" "$good" >b1.jsonl
expect_fail 1 b1.jsonl:3 JSON -- sft --data b1.jsonl
printf '%s\n{"prompt": "What is 1 + 1?"}\n' "$good" >b2.jsonl
expect_fail 1 b2.jsonl:2 '"answer"' missing -- sft --data b2.jsonl
: >b3.jsonl
expect_fail 1 b3.jsonl empty -- sft --data b3.jsonl
printf '\n  \n' >b3b.jsonl
expect_fail 1 b3b.jsonl empty -- sft --data b3b.jsonl
printf '{"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "yo"}]}\n' >b4.jsonl
expect_fail 1 b4.jsonl:1 'messages[1].role' bot -- sft --data b4.jsonl
printf '{"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "yo"}]}\n' >b5.jsonl
expect_fail 1 b5.jsonl:1 'messages[0].content' string -- sft --data b5.jsonl
printf '{"messages": [{"role": "user", "content": "hi"}]}\n' >b6.jsonl
expect_fail 1 b6.jsonl:1 assistant -- sft --data b6.jsonl
printf '{"messages": {"role": "user"}}\n' >b7.jsonl
expect_fail 1 b7.jsonl:1 messages -- sft --data b7.jsonl
printf '[1, 2]\n' >b8.jsonl
expect_fail 1 b8.jsonl:1 object -- sft --data b8.jsonl
printf '{"text": "plain"}\n' >b9.jsonl
expect_fail 1 b9.jsonl:1 messages prompt -- sft --data b9.jsonl
printf '{"prompt": "a", "answer": "b", "reasoning": 7}\n' >b10.jsonl
expect_fail 1 b10.jsonl:1 reasoning -- sft --data b10.jsonl
printf '\xff\xfe{"prompt"\n' >b11.jsonl
expect_fail 1 b11.jsonl:1 -- sft --data b11.jsonl
expect_fail 1 missing.jsonl -- sft --data missing.jsonl
expect_fail 1 b2.jsonl:2 -- sft --data p24.jsonl --val b2.jsonl
expect_fail 1 "fits" -- sft --data p24.jsonl --seq 10 --too-long skip
expect_fail 1 max_position_embeddings -- sft --data p24.jsonl --seq 300
expect_fail 1 tokenizer -- "$dsc" sft --model m0 --data p24.jsonl --out bad --steps 1 --seq 255
run "$dsc" tokenizer train --vocab-size 400 --out tok400.json corpus.txt
expect_fail 1 vocab_size -- sft --data p24.jsonl --tokenizer tok400.json
expect_fail 1 "no checkpoint" -- "$dsc" sft --data p24.jsonl --out nothing-here --resume
"$dsc" sft --data p24.jsonl --out x 2>/dev/null; [ $? -eq 2 ] && pass || fail "missing --model is a usage error"
"$dsc" sft --model base --data p24.jsonl --out x --too-long maybe 2>/dev/null; [ $? -eq 2 ] && pass \
  || fail "bad --too-long is a usage error"

finish sft_test
