#!/usr/bin/env bash
# Side by side on one (idle) machine: the official code and ours, back to back, then one table of ratios.
#
#   scripts/bench_side_by_side.sh [--runs N] [--onnx-runs N] [--eval-size H W] [--train-size S] [--threads T] [--out DIR]
#
# Official ($OFFICIAL_BENCH, default ../shared/reference/bench_official.py beside the clone: the patched official code
# set up under $REF_DIR, default /tmp/ref, per that folder's README.md): eval --size H W (143 names) and train --size S --datasets coco.
# Ours (tools/benchmark.py): `peak` (fp32/bf16 GFLOP/s of a 2048² matmul), eval in float32 with a cold text cache
# (empty cache folder: the vocabulary is embedded in the process) and a warm one (FLOPs counted), bfloat16 autocast
# (default: MODEL.ENCODER.CPU_BFLOAT16 parts), bfloat16 with the reference's fp32 parts (CPU_BFLOAT16 False),
# bfloat16 with the pixel-decoder FFN in bfloat16 (AUTOCAST_FFN), ONNX Runtime; train float32 and
# bfloat16 at S² on one COCO-like image with 5 objects (as the official step). Every case runs in its own process.
# JSON per case and table.md go to DIR (default output/side_by_side). Defaults: --runs 5 (train: 3),
# --eval-size 800 1216, --train-size 512, --threads 2; --onnx-runs (default 1; 0 skips the case): the ONNX Runtime
# case first exports the network (9-11 minutes for Swin-T on 2 cores), so it times fewer runs. A smoke run:
# --runs 1 --eval-size 256 320 --train-size 256.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
OFFICIAL="${OFFICIAL_BENCH:-../shared/reference/bench_official.py}"
RUNS=5; ONNX_RUNS=1; TRAIN_RUNS=""; EVAL_SIZE=(800 1216); TRAIN_SIZE=512; THREADS=2; OUT=output/side_by_side
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS="$2"; shift 2 ;;
    --train-runs) TRAIN_RUNS="$2"; shift 2 ;;
    --onnx-runs) ONNX_RUNS="$2"; shift 2 ;;
    --eval-size) EVAL_SIZE=("$2" "$3"); shift 3 ;;
    --train-size) TRAIN_SIZE="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    *) echo "unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
TRAIN_RUNS="${TRAIN_RUNS:-$(( RUNS < 3 ? RUNS : 3 ))}"
[ -f "$OFFICIAL" ] || { echo "official benchmark $OFFICIAL not found (set OFFICIAL_BENCH)" >&2; exit 1; }
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=offline PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
rm -rf "$OUT/text_cache" && mkdir -p "$OUT/text_cache"

case_() {  # case_ NAME COMMAND...: run one case, its JSON in $OUT/NAME.json; a failure is recorded, not fatal
  local name="$1"; shift
  echo "== $name: $*" | tee -a "$OUT/log.txt"
  rm -f "$OUT/$name.json"
  "$@" >> "$OUT/log.txt" 2>&1 || echo "   $name failed (exit $?), see $OUT/log.txt" | tee -a "$OUT/log.txt"
}

OURS=("$PY" tools/benchmark.py)
EVAL=(eval --size "${EVAL_SIZE[@]}" --runs "$RUNS" --warmup 1 --threads "$THREADS" --text-cache "$OUT/text_cache")
TRAIN=(train --size "$TRAIN_SIZE" --datasets coco --images 1 --instances 5 --runs "$TRAIN_RUNS" --warmup 1
       --threads "$THREADS")
case_ peak "${OURS[@]}" --json "$OUT/peak.json" peak --threads "$THREADS"
case_ official_eval "$PY" "$OFFICIAL" eval --size "${EVAL_SIZE[@]}" --runs "$RUNS" --threads "$THREADS" \
  --json "$OUT/official_eval.json"
case_ official_train "$PY" "$OFFICIAL" train --size "$TRAIN_SIZE" --datasets coco --runs "$TRAIN_RUNS" \
  --threads "$THREADS" --json "$OUT/official_train.json"
case_ eval_float32_cold "${OURS[@]}" --json "$OUT/eval_float32_cold.json" "${EVAL[@]}"
case_ eval_float32_warm "${OURS[@]}" --json "$OUT/eval_float32_warm.json" "${EVAL[@]}" --count-flops
case_ eval_bfloat16 "${OURS[@]}" --json "$OUT/eval_bfloat16.json" "${EVAL[@]}" --amp bfloat16
case_ eval_bfloat16_reference "${OURS[@]}" --json "$OUT/eval_bfloat16_reference.json" "${EVAL[@]}" --amp bfloat16 \
  MODEL.ENCODER.CPU_BFLOAT16 False
case_ eval_bfloat16_ffn "${OURS[@]}" --json "$OUT/eval_bfloat16_ffn.json" "${EVAL[@]}" --amp bfloat16 \
  MODEL.ENCODER.AUTOCAST_FFN True
if [ "$ONNX_RUNS" -gt 0 ]; then
  case_ eval_onnxruntime "${OURS[@]}" --json "$OUT/eval_onnxruntime.json" "${EVAL[@]}" --runs "$ONNX_RUNS" \
    --backend onnxruntime
fi
case_ train_float32 "${OURS[@]}" --json "$OUT/train_float32.json" "${TRAIN[@]}"
case_ train_bfloat16 "${OURS[@]}" --json "$OUT/train_bfloat16.json" "${TRAIN[@]}" --amp bfloat16

"$PY" scripts/side_by_side_report.py "$OUT" | tee "$OUT/table.md"
