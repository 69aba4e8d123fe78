#!/usr/bin/env bash
# Quality guard of bfloat16 evaluation on CPU: the demo model (`make demo` writes it) evaluated on the demo's synthetic
# validation sets (under $DETECTRON2_DATASETS, as make demo generated them) in float32, in bfloat16 autocast
# (reference fp32 parts) and in bfloat16 with the pixel-decoder FFN in bfloat16 too; every metric (PQ, mask AP,
# box AP, mIoU, ...) must stay within 0.5 points of float32.
# Each precision is evaluated afresh (--force) into its own folder: $OUT/float32, $OUT/bfloat16, $OUT/bfloat16_ffn.
#
#   scripts/amp_quality_check.sh [DEMO_DIR] [OUT]      (defaults: output/demo, output/amp_check)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
DEMO="${1:-output/demo}"
OUT="${2:-output/amp_check}"
CONFIG=configs/demo/openseed_demo.yaml
WEIGHTS="$DEMO/model_final.pth"
[ -f "$WEIGHTS" ] || { echo "$WEIGHTS not found: run make demo first" >&2; exit 1; }
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=offline PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
DATASETS=(synthetic_panoptic_val synthetic_boxes_val synthetic_boxes_val_masks synthetic_zeroshot_val)
BF16=(TEST.AMP.ENABLED True TEST.AMP.DTYPE bfloat16)

evaluate() {  # evaluate NAME KEY VALUE...
  local name="$1"; shift
  "$PY" tools/eval_zeroshot.py --config-file "$CONFIG" --weights "$WEIGHTS" --datasets "${DATASETS[@]}" \
    --output "$OUT/$name" --force --paper-model none "$@"
}
evaluate float32
evaluate bfloat16 "${BF16[@]}"
evaluate bfloat16_ffn "${BF16[@]}" MODEL.ENCODER.AUTOCAST_FFN True

"$PY" - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
def values(name):
    rows = json.loads((out / name / "summary.json").read_text())["rows"]
    return {(row["name"], column): value for row in rows for column, value in row["values"].items() if value is not None}
reference = values("float32")
failed = False
for name in ("bfloat16", "bfloat16_ffn"):
    other = values(name)
    worst = max((abs(other[k] - v), k) for k, v in reference.items() if k in other)
    missing = sorted(set(reference) - set(other))
    ok = worst[0] <= 0.5 and not missing
    failed |= not ok
    print(f"{name}: largest |Δ| vs float32 {worst[0]:.2f} points ({worst[1][0]} {worst[1][1]})"
          + (f", missing {missing}" if missing else "") + (" OK" if ok else " FAILED (> 0.5)"))
sys.exit(1 if failed else 0)
PY
