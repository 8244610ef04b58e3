# lib.sh: what the shell tests share (source it): a scratch folder removed at exit, check
# counting, and the one-line-error check. Each test ends with `finish NAME`.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
checks=0
pass() { checks=$((checks + 1)); }
fail() { checks=$((checks + 1)); fails=$((fails + 1)); echo "FAIL: $*"; }

# expect_fail CODE WORD... -- CMD...: CMD must exit CODE with exactly one line on stderr that
# contains every WORD (a one-line error naming the file, field or tensor).
expect_fail() {
  local code=$1 words=()
  shift
  while [ "$1" != "--" ]; do words+=("$1"); shift; done
  shift
  "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$? lines
  lines=$(wc -l <"$tmp/err")
  if [ "$rc" -ne "$code" ] || [ "$lines" -ne 1 ]; then
    fail "expected exit $code and one error line from: $* (exit $rc, $lines lines)"; cat "$tmp/err"; return
  fi
  for w in "${words[@]}"; do
    grep -qF -- "$w" "$tmp/err" || { fail "error of '$*' lacks '$w': $(cat "$tmp/err")"; return; }
  done
  pass
}

finish() {
  echo "$1: $checks checks, $fails failures"
  [ "$fails" -eq 0 ]
}

# tiny_tokenizer DSC PY [SYNTH OPTIONS...]: in the current folder, corpus.jsonl (400 generated
# arithmetic problems, seed 3) and tok.json, a 320-token BPE trained on their text.
tiny_tokenizer() {
  local dsc=$1 py=$2
  shift 2
  "$dsc" data synth --task arithmetic --n 400 --seed 3 "$@" --jsonl corpus.jsonl >"$tmp/log" 2>&1 || return 1
  "$py" -c "
import json
with open('corpus.txt', 'w') as f:
    for line in open('corpus.jsonl'):
        r = json.loads(line)
        f.write(r['prompt'] + ' ' + r.get('reasoning', '') + ' ' + r['answer'] + '\n\f\n')
" || return 1
  "$dsc" tokenizer train --vocab-size 320 --out tok.json corpus.txt >"$tmp/log" 2>&1
}

# tiny_model DSC PY DIR: a random `tiny` model with tok.json's 320-token vocabulary in DIR, the
# tokenizer next to it.
tiny_model() {
  local dsc=$1 py=$2 dir=$3
  "$dsc" init --preset tiny --out "$tmp/m0" >"$tmp/log" 2>&1 || return 1
  "$py" -c "
import json
c = json.load(open('$tmp/m0/config.json')); c['vocab_size'] = 320; json.dump(c, open('$tmp/tiny320.json', 'w'))" || return 1
  "$dsc" init --config "$tmp/tiny320.json" --out "$dir" --seed 5 >"$tmp/log" 2>&1 || return 1
  cp tok.json "$dir/tokenizer.json"
}
