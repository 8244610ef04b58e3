#!/usr/bin/env bash
# data_cli_test.sh DSC: `dsc data` end to end on a tiny corpus with a small trained tokenizer:
# prepare (text + JSONL + generated problems) -> shards that validate, decode back to the input,
# repeat bit for bit; synth exports; bad input gives a one-line error naming the file or option.
# Exits 77 (skipped) while `dsc tokenizer` is not available.
set -u
dsc=$1
"$dsc" tokenizer train --help >/dev/null 2>&1 || { echo "dsc tokenizer not available: skipped"; exit 77; }
. "$(dirname "$0")/lib.sh"

# --- a tiny corpus: 40 documents separated by form-feed lines, and a JSONL file ---
for i in $(seq 1 40); do
  [ "$i" -gt 1 ] && printf '\f\n'
  printf 'Document %d. Call me Ishmael; the whale swam %d leagues across the grey sea.\n' "$i" "$i"
  printf 'It had %d teeth and a temper.\n' $((i * 7))
done >"$tmp/corpus.txt"
{
  echo '{"text": "A JSONL document about harpoons."}'
  echo ''
  echo '{"prompt": "What is 2 + 3?", "answer": "5", "reasoning": "2 + 3 = 5"}'
  echo '{"prompt": "Say hi.", "answer": "hi"}'
} >"$tmp/extra.jsonl"
"$dsc" tokenizer train --vocab-size 400 --out "$tmp/tok.json" "$tmp/corpus.txt" >/dev/null 2>&1 \
  && pass || fail "tokenizer train"

prep() { "$dsc" data prepare --tokenizer "$tmp/tok.json" "$@"; }
prep --out "$tmp/d1" --val-fraction 0.2 --seed 3 --synthetic arithmetic=30,countdown=20 \
  "$tmp/corpus.txt" "$tmp/extra.jsonl" >"$tmp/prep.out" 2>&1 && pass || { fail "prepare"; cat "$tmp/prep.out"; }
for f in train.bin val.bin meta.json; do [ -s "$tmp/d1/$f" ] && pass || fail "prepare wrote no $f"; done
for s in train val; do
  "$dsc" data info "$tmp/d1/$s.bin" --tokenizer "$tmp/tok.json" >/dev/null 2>&1 && pass || fail "$s.bin does not validate"
done
grep -q "checksum" "$tmp/prep.out" && pass || fail "prepare prints checksums"

# documents: 40 text + 3 JSONL + 30 + 20 generated (train) + 6 + 4 held-out (val, ceil(0.2 n))
docs=$(sed -n 's/.*: \([0-9]*\) documents.*/\1/p' "$tmp/prep.out" | awk '{ s += $1 } END { print s }')
[ "$docs" = "103" ] && pass || fail "expected 103 documents in train + val, found $docs"
if [ -x /usr/bin/python3 ]; then
  /usr/bin/python3 - "$tmp/d1/meta.json" <<'PY' && pass || fail "meta.json contents"
import json, sys
m = json.load(open(sys.argv[1]))
src = {s["name"]: s for s in m["sources"]}
assert m["format"] == "dsc-data-1" and m["command"].startswith("dsc data prepare")
assert 256 < m["tokenizer"]["vocab_size"] <= 400 and len(m["tokenizer"]["hash"]) == 16
assert src["corpus.txt"]["train"]["documents"] + src["corpus.txt"]["val"]["documents"] == 40
assert src["extra.jsonl"]["train"]["documents"] + src["extra.jsonl"]["val"]["documents"] == 3
assert src["synthetic:arithmetic"]["train"]["documents"] == 30 and src["synthetic:arithmetic"]["val"]["documents"] == 6
assert src["synthetic:countdown"]["train"]["documents"] == 20 and src["synthetic:countdown"]["val"]["documents"] == 4
for s in ("train", "val"):
    sp = m["splits"][s]
    assert sp["tokens"] == sum(x[s]["tokens"] for x in m["sources"])
    assert sp["documents"] == sum(x[s]["documents"] for x in m["sources"]) and sp["documents"] > 0
PY
fi

# the shards decode back to the input: every text document is in train or val, chat docs intact
"$dsc" data info "$tmp/d1/train.bin" --tokenizer "$tmp/tok.json" --show 1000000 >"$tmp/train.txt" 2>&1
"$dsc" data info "$tmp/d1/val.bin" --tokenizer "$tmp/tok.json" --show 1000000 >"$tmp/val.txt" 2>&1
missing=0
for i in $(seq 1 40); do
  grep -qF "Document $i. Call me Ishmael; the whale swam $i leagues" "$tmp/train.txt" "$tmp/val.txt" || missing=$((missing + 1))
done
[ "$missing" -eq 0 ] && pass || fail "$missing text documents not found in the decoded shards"
grep -qF "<｜User｜>What is 2 + 3?<｜Assistant｜><think>" "$tmp/train.txt" "$tmp/val.txt" && pass || fail "chat JSONL rendered"
grep -qF "<｜Assistant｜>hi<｜end▁of▁sentence｜>" "$tmp/train.txt" "$tmp/val.txt" && pass || fail "chat without reasoning"
grep -qF "Using the numbers" "$tmp/train.txt" && grep -qF "column 1:" "$tmp/train.txt" && pass || fail "generated problems"

# same inputs, same bytes (any thread count); another split seed moves documents
prep --out "$tmp/d2" --val-fraction 0.2 --seed 3 --synthetic arithmetic=30,countdown=20 --threads 1 \
  "$tmp/corpus.txt" "$tmp/extra.jsonl" >/dev/null 2>&1
cmp -s "$tmp/d1/train.bin" "$tmp/d2/train.bin" && cmp -s "$tmp/d1/val.bin" "$tmp/d2/val.bin" && pass \
  || fail "prepare is not deterministic"
prep --out "$tmp/d3" --val-fraction 0.2 --seed 4 "$tmp/corpus.txt" >/dev/null 2>&1
cmp -s "$tmp/d1/val.bin" "$tmp/d3/val.bin" && fail "seed 4 gives the same split" || pass

# --- synth ---
"$dsc" data synth --task countdown --n 5 --seed 2 --jsonl "$tmp/cd.jsonl" 2>/dev/null && pass || fail "synth"
[ "$(wc -l <"$tmp/cd.jsonl")" -eq 5 ] && grep -c '"checker":"countdown"' "$tmp/cd.jsonl" | grep -qx 5 && pass \
  || fail "synth wrote 5 countdown lines"
"$dsc" data synth --task countdown --n 5 --seed 2 --jsonl - >"$tmp/cd2.jsonl" && cmp -s "$tmp/cd.jsonl" "$tmp/cd2.jsonl" \
  && pass || fail "synth is deterministic (file vs stdout)"
"$dsc" data synth --task arithmetic --n 3 --held-out --jsonl - | grep -c '"checker":"arithmetic"' | grep -qx 3 \
  && pass || fail "held-out arithmetic"
"$dsc" data synth --task arithmetic --n 2 --render --jsonl - | grep -qF "</think>" && pass || fail "synth --render"
prep --out "$tmp/d4" "$tmp/cd.jsonl" >/dev/null 2>&1 && pass || fail "prepare reads synth's JSONL"

# --- bad input ---
expect_fail 1 "nope.json" -- "$dsc" data prepare --tokenizer "$tmp/nope.json" --out "$tmp/x" "$tmp/corpus.txt"
expect_fail 1 "missing.txt" -- prep --out "$tmp/x" "$tmp/missing.txt"
printf '{"text": "ok"}\n{"prompt": 3}\n' >"$tmp/bad.jsonl"
expect_fail 1 "bad.jsonl:2" "prompt" -- prep --out "$tmp/x" "$tmp/bad.jsonl"
printf '{"text": "ok"}\nnot json\n' >"$tmp/bad2.jsonl"
expect_fail 1 "bad2.jsonl:2" -- prep --out "$tmp/x" "$tmp/bad2.jsonl"
expect_fail 2 "--synthetic" -- prep --out "$tmp/x" --synthetic poetry=3
expect_fail 2 "--synthetic" -- prep --out "$tmp/x" --synthetic arithmetic=-3
expect_fail 2 "--val-fraction" -- prep --out "$tmp/x" --val-fraction 0.9 "$tmp/corpus.txt"
expect_fail 2 "nothing to prepare" -- prep --out "$tmp/x"
expect_fail 2 "task" -- "$dsc" data synth --task poetry --n 1 --jsonl -
cp "$tmp/d1/train.bin" "$tmp/corrupt.bin"
printf '\x07' | dd of="$tmp/corrupt.bin" bs=1 seek=100 conv=notrunc 2>/dev/null
expect_fail 1 "corrupt.bin" "checksum" -- "$dsc" data info "$tmp/corrupt.bin"
head -c 100 "$tmp/d1/train.bin" >"$tmp/short.bin"
expect_fail 1 "short.bin" "truncated" -- "$dsc" data info "$tmp/short.bin"
"$dsc" tokenizer train --vocab-size 300 --out "$tmp/tok2.json" "$tmp/corpus.txt" >/dev/null 2>&1
expect_fail 1 "train.bin" "vocab_size" -- "$dsc" data info "$tmp/d1/train.bin" --tokenizer "$tmp/tok2.json"
[ ! -e "$tmp/x/train.bin" ] && ! ls "$tmp/x" 2>/dev/null | grep -q tmp && pass || fail "failed runs leave no files"

finish data_cli_test
