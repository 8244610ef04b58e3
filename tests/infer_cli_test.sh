#!/usr/bin/env bash
# infer_cli_test.sh DSC: inference end to end through the command line.
#  - `dsc generate --temperature 0 --print-ids` against the PyTorch reference's greedy generation,
#    which recomputes the whole sequence in float64 at every step (no cache): the whole prefill +
#    decode path (latent cache, absorbed MLA, chunks, MoE, mHC, DSA, YaRN) checked from outside;
#  - speculative decoding with the MTP module gives the same greedy ids;
#  - exports (HF f32, bf16; GGUF f32, q8_0) and back give the same ids (f32) or run (quantized);
#    `dsc info` on a GGUF; sampling is reproducible by seed; --stop;
#  - bad input: one error line, non-zero exit, no crash (under ASan in the sanitizer build).
set -u
dsc=$1
ref="$(dirname "$0")/reference/generate_ref.py"
. "$(dirname "$0")/lib.sh"

# the generated ids, comma-separated
ids() { "$dsc" generate --model "$1" --tokens "$2" --max-tokens "$3" --temperature 0 --print-ids --ignore-eos "${@:4}" \
  2>"$tmp/gen.err" | tr -s ' \n,' ',' | sed 's/^,//; s/,$//'; }
same() { # same WHAT A B
  if [ "$2" = "$3" ] && [ -n "$2" ]; then pass; else fail "$1: '$2' vs '$3'"; cat "$tmp/gen.err"; fi
}

# the tiny preset has everything: MLA with q_lora, MoE with groups and bias, mHC, DSA, MTP
"$dsc" init --preset tiny --out "$tmp/tiny" --seed 3 >/dev/null || fail "init tiny"
want=$(/usr/bin/python3 "$ref" "$tmp/tiny" --tokens 0,17,42,5,9 --max-tokens 24 --perturb 11 2>"$tmp/ref.err")
got=$(ids "$tmp/tiny" 0,17,42,5,9 24 | sed 's/^,//; s/,$//')
got=$(echo "$got")
same "greedy ids vs the reference ($(cat "$tmp/ref.err"))" "$got" "$want"
spec=$(ids "$tmp/tiny" 0,17,42,5,9 24 --speculative)
same "speculative (MTP) greedy ids" "$spec" "$want"
# a long prompt (prefill in chunks) and YaRN positions beyond the original context
long=$(seq -s, 1 90 | awk -F, '{for(i=1;i<=NF;i++) printf "%s%d", (i>1?",":""), ($i*7)%97}')
want=$(/usr/bin/python3 "$ref" "$tmp/tiny" --tokens "$long" --max-tokens 6 2>/dev/null)
got=$(ids "$tmp/tiny" "$long" 6)
same "greedy ids after a 90-token prompt" "$got" "$want"

# exports and back
"$dsc" export --model "$tmp/tiny" --out "$tmp/hf" --hf >/dev/null 2>&1 && pass || fail "export --hf"
got=$(ids "$tmp/hf" 0,17,42,5,9 24)
want=$(ids "$tmp/tiny" 0,17,42,5,9 24)
same "f32 HF export generates the same ids" "$got" "$want"
"$dsc" quantize --model "$tmp/tiny" --out "$tmp/bf16" --type bf16 >/dev/null 2>&1 && pass || fail "quantize bf16"
n=$(ids "$tmp/bf16" 0,17,42 8 | tr ',' '\n' | grep -c .)
[ "$n" -eq 8 ] && pass || fail "bf16 model generates 8 tokens (got $n)"
expect_fail 1 mHC -- "$dsc" export --model "$tmp/tiny" --out "$tmp/t.gguf" --gguf

# a model llama.cpp can run (no mHC, no indexer) with a real tokenizer, to GGUF and back
/usr/bin/python3 - "$tmp/tiny/config.json" "$tmp/plain.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c.update(mhc_expansion_rate=1, index_n_heads=0, vocab_size=320, model_type="deepseek_v3")
json.dump(c, open(sys.argv[2], "w"))
PY
"$dsc" init --config "$tmp/plain.json" --out "$tmp/plain" --seed 4 >/dev/null || fail "init plain"
"$dsc" tokenizer train --vocab-size 300 --out "$tmp/plain/tokenizer.json" "$(dirname "$0")/../README.md" >/dev/null 2>&1 \
  || fail "tokenizer"
/usr/bin/python3 "$ref" "$tmp/plain" --tokens 1,2 --max-tokens 1 --perturb 12 >/dev/null 2>&1
for t in f32 q8_0; do
  "$dsc" export --model "$tmp/plain" --out "$tmp/plain-$t.gguf" --gguf --type "$t" >/dev/null 2>&1 && pass || fail "export --gguf $t"
done
"$dsc" info --model "$tmp/plain-f32.gguf" >"$tmp/out" 2>&1 && grep -q "every tensor the model reads" "$tmp/out" \
  && pass || fail "info on a GGUF: $(cat "$tmp/out")"
got=$(ids "$tmp/plain-f32.gguf" 5,6,7 16)
want=$(ids "$tmp/plain" 5,6,7 16)
same "f32 GGUF generates the ids of the model it came from" "$got" "$want"
n=$(ids "$tmp/plain-q8_0.gguf" 5,6,7 8 | tr ',' '\n' | grep -c .)
[ "$n" -eq 8 ] && pass || fail "q8_0 GGUF generates 8 tokens (got $n)"
"$dsc" generate --model "$tmp/plain" --prompt "the model" --max-tokens 12 --temperature 0.9 --seed 7 >"$tmp/a" 2>/dev/null
"$dsc" generate --model "$tmp/plain" --prompt "the model" --max-tokens 12 --temperature 0.9 --seed 7 >"$tmp/b" 2>/dev/null
[ -s "$tmp/a" ] && cmp -s "$tmp/a" "$tmp/b" && pass || fail "sampling with a seed is reproducible"
printf 'hello there\n/reset\nwhat is 2+2?\n' | timeout 60 "$dsc" chat --model "$tmp/plain" --max-tokens 6 >"$tmp/chat" 2>&1
[ $? -eq 0 ] && grep -q "conversation reset" "$tmp/chat" && [ "$(grep -c '^> ' "$tmp/chat")" -ge 3 ] && pass \
  || fail "chat over a pipe: $(cat "$tmp/chat")"

# bad input
expect_fail 1 "no-such" -- "$dsc" generate --model "$tmp/no-such" --tokens 1 --max-tokens 2
expect_fail 1 "1000" -- "$dsc" generate --model "$tmp/tiny" --tokens 1,1000 --max-tokens 2 --print-ids
head -c 5000 "$tmp/plain-f32.gguf" >"$tmp/cut.gguf"
expect_fail 1 cut.gguf -- "$dsc" generate --model "$tmp/cut.gguf" --tokens 1 --max-tokens 2
expect_fail 1 cut.gguf -- "$dsc" info --model "$tmp/cut.gguf"
printf 'GGUF\003\000\000\000' >"$tmp/tiny.gguf"
expect_fail 1 tiny.gguf -- "$dsc" generate --model "$tmp/tiny.gguf" --tokens 1 --max-tokens 2
cp -r "$tmp/hf" "$tmp/hf-missing" && rm -f "$(ls "$tmp"/hf-missing/*.safetensors | tail -1)"
expect_fail 1 safetensors -- "$dsc" generate --model "$tmp/hf-missing" --tokens 1 --max-tokens 2 --print-ids
finish infer_cli
