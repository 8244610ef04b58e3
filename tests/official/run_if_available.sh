#!/bin/sh
# run_if_available.sh DSC_EXECUTABLE
#
# Runs tests/official/compare_official.py (dsc forward vs DeepSeek's own inference code) when
# DSC_DEEPSEEK_V3_DIR points at a checkout of github.com/deepseek-ai/DeepSeek-V3; otherwise exits
# 77, which ctest reports as skipped (SKIP_RETURN_CODE 77). Optional environment:
#   DSC_DEEPSEEK_V32_DIR  a checkout of deepseek-ai/DeepSeek-V3.2-Exp: also compare the DSA indexer
#   DSC_PYTHON            the Python with PyTorch (default /usr/bin/python3, then python3)
set -u
here=$(cd "$(dirname "$0")" && pwd)
dsc=${1:-}
if [ -z "$dsc" ]; then
    echo "usage: $0 PATH_TO_dsc" >&2
    exit 2
fi
if [ -z "${DSC_DEEPSEEK_V3_DIR:-}" ]; then
    echo "skip: DSC_DEEPSEEK_V3_DIR is not set (a checkout of github.com/deepseek-ai/DeepSeek-V3)"
    exit 77
fi
if [ ! -f "$DSC_DEEPSEEK_V3_DIR/inference/model.py" ]; then
    echo "skip: $DSC_DEEPSEEK_V3_DIR/inference/model.py not found"
    exit 77
fi
py=${DSC_PYTHON:-}
if [ -z "$py" ]; then
    for c in /usr/bin/python3 python3; do
        if "$c" -c "import torch, numpy" >/dev/null 2>&1; then py=$c; break; fi
    done
fi
if [ -z "$py" ] || ! "$py" -c "import torch, numpy" >/dev/null 2>&1; then
    echo "skip: no Python with torch and numpy (set DSC_PYTHON)"
    exit 77
fi
set -- --deepseek-v3 "$DSC_DEEPSEEK_V3_DIR" --dsc "$dsc" --negative-controls
if [ -n "${DSC_DEEPSEEK_V32_DIR:-}" ]; then
    if [ -f "$DSC_DEEPSEEK_V32_DIR/inference/model.py" ]; then
        set -- "$@" --deepseek-v32 "$DSC_DEEPSEEK_V32_DIR"
    else
        echo "note: $DSC_DEEPSEEK_V32_DIR/inference/model.py not found; V3.2 comparison skipped"
    fi
fi
exec "$py" "$here/compare_official.py" "$@"
