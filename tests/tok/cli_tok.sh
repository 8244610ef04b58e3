#!/usr/bin/env bash
# cli_tok.sh DSC: `dsc tokenizer train` and `dsc tokenize` end to end: training on a small corpus,
# encode -> decode round trips of text and of random binary data (stdin and files), special
# tokens, and bad input giving one error line with a non-zero exit code (run under ASan in the
# sanitizer build). Needs nothing outside the repository.
set -u
dsc=$1
. "$(dirname "$0")/../lib.sh"

# a small corpus: prose, code, numbers, a little of everything
for i in $(seq 1 200); do
  echo "The tokenizer learns merges from text number $i; 深度求索 $((i * 7919)) café naïve 😀"
  printf 'def f%d(x):\n\treturn x * %d  # comment\n\n' "$i" "$i"
done >"$tmp/corpus.txt"
"$dsc" tokenizer train --vocab-size 500 --out "$tmp/tok.json" "$tmp/corpus.txt" >"$tmp/out" &&
  grep -q "vocabulary 500" "$tmp/out" && pass || fail "tokenizer train: $(cat "$tmp/out")"
"$dsc" tokenizer info --tokenizer "$tmp/tok.json" | grep -q "bos 0 eos 1 pad 2 user 3 assistant 4 think 5 /think 6" &&
  pass || fail "tokenizer info: specials"

# round trips: the corpus, random bytes (NULs and invalid UTF-8 included), standard input
"$dsc" tokenize --tokenizer "$tmp/tok.json" "$tmp/corpus.txt" >"$tmp/ids" && pass || fail "tokenize corpus"
[ "$(wc -l <"$tmp/ids")" -eq 1 ] && ! grep -q "  " "$tmp/ids" && pass || fail "ids are one line, single spaces"
"$dsc" tokenize --tokenizer "$tmp/tok.json" --decode "$tmp/ids" | cmp -s - "$tmp/corpus.txt" && pass || fail "decode corpus"
head -c 100000 /dev/urandom >"$tmp/rand.bin"
"$dsc" tokenize --tokenizer "$tmp/tok.json" - <"$tmp/rand.bin" >"$tmp/rand.ids" && pass || fail "tokenize random stdin"
"$dsc" tokenize --tokenizer "$tmp/tok.json" --decode - <"$tmp/rand.ids" | cmp -s - "$tmp/rand.bin" &&
  pass || fail "random bytes round trip"
: >"$tmp/empty"
[ "$("$dsc" tokenize --tokenizer "$tmp/tok.json" "$tmp/empty")" = "" ] && pass || fail "empty file gives an empty line"

# special tokens: parsed by default, plain text with --no-special
printf '<｜begin▁of▁sentence｜><｜User｜>hi<｜Assistant｜><think>x</think>ok<｜end▁of▁sentence｜>' >"$tmp/chat.txt"
ids=$("$dsc" tokenize --tokenizer "$tmp/tok.json" "$tmp/chat.txt")
case "$ids" in "0 3 "*" 4 5 "*" 6 "*" 1") pass ;; *) fail "specials not parsed: $ids" ;; esac
ids=$("$dsc" tokenize --tokenizer "$tmp/tok.json" --no-special "$tmp/chat.txt")
echo "$ids" | tr ' ' '\n' | grep -qx '[0-6]' && fail "--no-special still gives special ids: $ids" || pass
echo "$ids" | "$dsc" tokenize --tokenizer "$tmp/tok.json" --decode - | cmp -s - "$tmp/chat.txt" && pass ||
  fail "--no-special round trip"

# bad input
expect_fail 1 nope.json -- "$dsc" tokenize --tokenizer "$tmp/nope.json" "$tmp/corpus.txt"
expect_fail 1 missing.txt -- "$dsc" tokenize --tokenizer "$tmp/tok.json" "$tmp/missing.txt"
printf '{"model": {"type": "WordPiece"}}' >"$tmp/bad.json"
expect_fail 1 bad.json model.type WordPiece -- "$dsc" tokenize --tokenizer "$tmp/bad.json" "$tmp/corpus.txt"
echo "1 2 x3" >"$tmp/badids"
expect_fail 1 badids "'x3'" -- "$dsc" tokenize --tokenizer "$tmp/tok.json" --decode "$tmp/badids"
echo "5 500" >"$tmp/badids"
expect_fail 1 badids 500 -- "$dsc" tokenize --tokenizer "$tmp/tok.json" --decode "$tmp/badids"
expect_fail 1 missing.txt -- "$dsc" tokenizer train --vocab-size 600 --out "$tmp/t2.json" "$tmp/missing.txt"
"$dsc" tokenizer train --vocab-size 100 --out "$tmp/t2.json" "$tmp/corpus.txt" 2>/dev/null; [ $? -eq 2 ] && pass ||
  fail "train: vocab-size 100 is a usage error"
"$dsc" tokenize "$tmp/corpus.txt" 2>/dev/null; [ $? -eq 2 ] && pass || fail "tokenize without --tokenizer: usage error"

finish cli_tok
