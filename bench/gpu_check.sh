#!/usr/bin/env bash
# The GPU check of issue 22 in one call (bench/README.md, "GPU check"): every part of
# bench/gpu_check.py within its time budget, results under $OUT as they come, the whole log in
# $OUT/gpu_check.log. Extra arguments go to gpu_check.py (--rehearse runs it all on the CPU).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${OUT:?set OUT to the folder for the results}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
python3 bench/gpu_check.py --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu_check.log"
exit "${PIPESTATUS[0]}"
