#!/usr/bin/env bash
# deps.sh: installs the Debian packages dsc needs, if any is missing.
#   scripts/deps.sh build   compiler, CMake, jansson, PCRE2 (enough to build and run dsc)
#   scripts/deps.sh test    + PyTorch and NumPy for the reference, clang for the fuzzers
#   scripts/deps.sh bench   + OpenBLAS, so that the PyTorch peer runs at its best
set -euo pipefail
want=(build-essential cmake pkg-config libjansson-dev libpcre2-dev)
case "${1:-build}" in
  build) ;;
  test)  want+=(python3-torch python3-numpy clang libclang-rt-14-dev)
         # node + npm for the DeepSeek-V3 tokenizer reference (tests/tok); a node that is already
         # there (e.g. one that bundles npm) is kept
         command -v node >/dev/null || want+=(nodejs)
         command -v npm >/dev/null || want+=(npm) ;;
  bench) want+=(python3-torch python3-numpy libopenblas0-pthread) ;;
  *) echo "usage: $0 build|test|bench" >&2; exit 2 ;;
esac
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}"
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q >/dev/null || true
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
