#!/usr/bin/env bash
# cli_test.sh DSC: the dsc command end to end: info on every preset, init -> forward round trip,
# and bad input (config fields, weights, token lists) giving a one-line error naming the file and
# field or tensor, with a non-zero exit code and no crash (run under ASan in the sanitizer build).
set -u
dsc=$1
. "$(dirname "$0")/lib.sh"

for p in tiny small deepseek-v3 deepseek-v3.2 deepseek-v2-lite; do
  "$dsc" info --preset "$p" >"$tmp/out" 2>&1 && grep -q "parameters: total" "$tmp/out" && pass || fail "info --preset $p"
done
grep -q "total 671.03B" <("$dsc" info --preset deepseek-v3) && pass || fail "deepseek-v3 has 671.03B parameters"
grep -q "70272 bytes latent" <("$dsc" info --preset deepseek-v3) && pass || fail "deepseek-v3 KV cache 70272 B/token"

"$dsc" init --preset tiny --out "$tmp/m" --seed 3 >/dev/null && pass || fail "init tiny"
"$dsc" forward --model "$tmp/m" --tokens 0,17,42 --out "$tmp/l.f32" >/dev/null && pass || fail "forward tiny"
[ "$(stat -c %s "$tmp/l.f32")" -eq $((3 * 97 * 4)) ] && pass || fail "logits file is 3 x 97 floats"
"$dsc" forward --model "$tmp/m" --tokens 0,17,42 --out "$tmp/l2.f32" >/dev/null && cmp -s "$tmp/l.f32" "$tmp/l2.f32" \
  && pass || fail "forward is deterministic"

# --- bad configs ---
cp -r "$tmp/m" "$tmp/bad"
edit() { /usr/bin/python3 - "$tmp/bad/config.json" "$1" "$2" <<'PY'
import json, sys
p, k, v = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
c = json.load(open(p))
if v == "__delete__": c.pop(k, None)
else: c[k] = v
json.dump(c, open(p, "w"))
PY
}
restore() { cp "$tmp/m/config.json" "$tmp/bad/config.json"; }
edit hidden_size -4;  expect_fail 1 config.json hidden_size -- "$dsc" forward --model "$tmp/bad" --tokens 1 --out "$tmp/x"; restore
edit n_group 3;       expect_fail 1 config.json n_group -- "$dsc" forward --model "$tmp/bad" --tokens 1 --out "$tmp/x"; restore
edit model_type '"llama"'; expect_fail 1 config.json model_type llama -- "$dsc" forward --model "$tmp/bad" --tokens 1 --out "$tmp/x"; restore
edit vocab_size '"many"'; expect_fail 1 config.json vocab_size integer -- "$dsc" forward --model "$tmp/bad" --tokens 1 --out "$tmp/x"; restore
edit kv_lora_rank '"__delete__"'; expect_fail 1 config.json kv_lora_rank missing -- "$dsc" forward --model "$tmp/bad" --tokens 1 --out "$tmp/x"; restore
edit rope_scaling '{"type": "yarn"}'; expect_fail 1 config.json rope_scaling.factor -- "$dsc" forward --model "$tmp/bad" --tokens 1 --out "$tmp/x"; restore
edit scoring_func '"relu"'; expect_fail 1 config.json scoring_func relu -- "$dsc" forward --model "$tmp/bad" --tokens 1 --out "$tmp/x"; restore
edit hidden_size 64; expect_fail 1 model.safetensors model.embed_tokens.weight "expects [97, 64]" -- "$dsc" forward --model "$tmp/bad" --tokens 1 --out "$tmp/x"; restore
printf '{"model_type": "deepseek_v3", ' >"$tmp/bad/config.json"
expect_fail 1 config.json JSON -- "$dsc" forward --model "$tmp/bad" --tokens 1 --out "$tmp/x"; restore

# --- bad weights ---
st="$tmp/bad/model.safetensors"
head -c 100 "$tmp/m/model.safetensors" >"$st"
expect_fail 1 model.safetensors -- "$dsc" forward --model "$tmp/bad" --tokens 1 --out "$tmp/x"
head -c $(( $(stat -c %s "$tmp/m/model.safetensors") - 8 )) "$tmp/m/model.safetensors" >"$st"
expect_fail 1 model.safetensors -- "$dsc" forward --model "$tmp/bad" --tokens 1 --out "$tmp/x"
: >"$st"
expect_fail 1 model.safetensors -- "$dsc" forward --model "$tmp/bad" --tokens 1 --out "$tmp/x"
rm -f "$st"
expect_fail 1 model.safetensors -- "$dsc" forward --model "$tmp/bad" --tokens 1 --out "$tmp/x"
/usr/bin/python3 - "$tmp/m/model.safetensors" "$st" <<'PY'
import json, struct, sys
src, dst = sys.argv[1], sys.argv[2]
b = open(src, "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
name = "model.norm.weight"
beg, end = h[name]["data_offsets"]
data = bytearray(b[8 + n:])
data[beg:beg + 4] = struct.pack("<f", float("nan"))
open(dst, "wb").write(b[:8 + n] + bytes(data))
PY
expect_fail 1 model.safetensors model.norm.weight -- "$dsc" forward --model "$tmp/bad" --tokens 1 --out "$tmp/x"
cp "$tmp/m/model.safetensors" "$st"

# --- bad token lists and options ---
expect_fail 1 vocabulary -- "$dsc" forward --model "$tmp/m" --tokens 5,97 --out "$tmp/x"
"$dsc" forward --model "$tmp/m" --tokens 1,-2 --out "$tmp/x" 2>/dev/null; [ $? -eq 2 ] && pass || fail "negative token is a usage error"
"$dsc" forward --model "$tmp/m" --tokens 1 --bogus 2>/dev/null; [ $? -eq 2 ] && pass || fail "unknown option is a usage error"
"$dsc" nonsense 2>/dev/null; [ $? -eq 2 ] && pass || fail "unknown command is a usage error"
expect_fail 1 max_position_embeddings -- "$dsc" forward --model "$tmp/m" --tokens "$(yes 5 | head -n 300 | paste -sd,)" --out "$tmp/x"

finish cli_test
