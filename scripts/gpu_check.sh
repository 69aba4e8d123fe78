#!/usr/bin/env bash
# GPU check, about 4 minutes on one H200: the CUDA tests, eval at 800×1216 in float32 and float16/bfloat16 autocast
# (time, peak GPU memory), one AMP joint training step at the official per-GPU batch (2 COCO + 2 Objects365 images)
# and 1024² LSJ canvas (time, peak GPU memory). Results go to $OUT_DIR (default output/gpu_check): one JSON per
# benchmark (tools/benchmark.py --json) and summary.txt; the text-embedding cache goes to $TEXT_CACHE (default
# $OUT_DIR/text_cache).
#
# Usage: scripts/gpu_check.sh [--dry-run]     (--dry-run: print the commands and check the tools' options on CPU)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
OUT_DIR="${OUT_DIR:-output/gpu_check}"
TEXT_CACHE="${TEXT_CACHE:-$OUT_DIR/text_cache}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=offline PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export OPENSEED_REFDATA="${OPENSEED_REFDATA:-$(realpath -m ../shared/refdata)}"
DRY_RUN=0
[ "${1:-}" = "--dry-run" ] && DRY_RUN=1

step() {  # step SECONDS COMMAND...: run with a time limit, keep going on failure, record the status
  local limit="$1"; shift
  echo "+ $*"
  if [ "$DRY_RUN" = 1 ]; then return 0; fi
  local start=$SECONDS status=0
  timeout "$limit" "$@" || status=$?
  echo "  -> exit $status after $((SECONDS - start)) s"
  echo "exit $status, $((SECONDS - start)) s: $*" >> "$OUT_DIR/steps.txt"
}

mkdir -p "$OUT_DIR"
: > "$OUT_DIR/steps.txt"
if [ "$DRY_RUN" = 1 ]; then
  for sub in eval train; do "$PY" tools/benchmark.py "$sub" --help > /dev/null; done
  "$PY" -m pytest --collect-only -q tests/engine/test_engine_cuda.py tests/modeling/test_model_parity_cuda.py | tail -n 1
else
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT_DIR/gpu.txt"
fi

BENCH=("$PY" tools/benchmark.py)
EVAL=(eval --device cuda --size 800 1216 --runs 5 --warmup 2 --text-cache "$TEXT_CACHE")
# 1. CUDA tests: AMP training (fp16 + GradScaler, bf16) on the tiny config; parity on CUDA with TF32 off (-s shows
#    its errors against the official outputs)
step 240 "$PY" -m pytest -q -s tests/engine/test_engine_cuda.py tests/modeling/test_model_parity_cuda.py
# 2. eval at 800×1216 (143 names): float32 (TF32 off by default in PyTorch for matmuls), float16 and bfloat16
step 90 "${BENCH[@]}" --json "$OUT_DIR/eval_float32.json" "${EVAL[@]}"
step 60 "${BENCH[@]}" --json "$OUT_DIR/eval_float16.json" "${EVAL[@]}" --amp float16
step 60 "${BENCH[@]}" --json "$OUT_DIR/eval_bfloat16.json" "${EVAL[@]}" --amp bfloat16
# 3. one joint AMP training step: official per-GPU batch (TRAIN_IMS_PER_GPU 2 + 2), 1024² LSJ canvas
step 120 "${BENCH[@]}" --json "$OUT_DIR/train_float16.json" train --device cuda --size 1024 --images 2 \
  --runs 3 --warmup 1 --amp float16

if [ "$DRY_RUN" = 0 ]; then
  "$PY" - "$OUT_DIR" <<'PY' | tee "$OUT_DIR/summary.txt"
import json, statistics, sys
from pathlib import Path
out = Path(sys.argv[1])
print("| case | median s | peak GPU memory GB | peak RSS GB |")
print("|---|---|---|---|")
for name in ("eval_float32", "eval_float16", "eval_bfloat16", "train_float16"):
    path = out / f"{name}.json"
    if not path.is_file():
        print(f"| {name} | missing | | |")
        continue
    for row in json.loads(path.read_text())["rows"]:
        if "error" in row:
            print(f"| {name} | {row['error']} | | |")
            continue
        print(f"| {name} | {statistics.median(row['wall_s']):.3f} | {row.get('cuda_peak_mb', float('nan')) / 1024:.2f} "
              f"| {row['peak_rss_mb'] / 1024:.2f} |")
PY
  cat "$OUT_DIR/steps.txt"
fi
