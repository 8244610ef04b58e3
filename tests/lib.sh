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
