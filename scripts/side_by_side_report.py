#!/usr/bin/env python
"""The table of scripts/bench_side_by_side.sh: official vs ours per case, ratios, and the share of the floor.

    python scripts/side_by_side_report.py DIR      (DIR holds the JSON files the script wrote)

Times are medians of wall seconds; "faster" = official / ours; "memory" = ours / official peak RSS (official: the
whole child process, model building included; ours: the timed forwards or steps with the model resident). The floor
of the network (backbone, pixel decoder, decoder) is its FLOPs (counted on the float32 warm case) divided by the
measured matmul peak of the precision (`tools/benchmark.py peak`); "share of floor" = floor / measured network time
(1.0 would be every FLOP at peak matmul speed; bfloat16 cases keep float32 parts, so their floor is optimistic).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

NETWORK_STAGES = ("backbone", "pixel decoder", "decoder", "network")
EVAL_CASES = (("eval_float32_cold", "float32, cold text cache"), ("eval_float32_warm", "float32, warm text cache"),
              ("eval_bfloat16", "bfloat16 autocast (CPU bfloat16 parts)"),
              ("eval_bfloat16_reference", "bfloat16 autocast, reference float32 parts"),
              ("eval_bfloat16_ffn", "bfloat16 + FFN in bfloat16"),
              ("eval_onnxruntime", "ONNX Runtime float32"))
TRAIN_CASES = (("train_float32", "float32"), ("train_bfloat16", "bfloat16 autocast"))


def load(folder: Path, name: str) -> dict | None:
    """The first row of NAME.json (ours: {"rows": [...]}; official: the result dict), None if absent or failed."""
    path = folder / f"{name}.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    row = data["rows"][0] if "rows" in data else data
    return None if "error" in row else row


def med(values) -> float:
    return float(statistics.median(values)) if values else float("nan")


def rss_gb(row: dict) -> float:
    return row.get("peak_rss_mb", row.get("peak_rss_mib", float("nan"))) / 1024


def network_s(row: dict) -> float:
    return sum(med(row["stages"][s]) for s in NETWORK_STAGES if s in row["stages"])


def main(folder: Path) -> None:
    peaks = {row["dtype"]: med(row["gflops"]) for row in json.loads((folder / "peak.json").read_text())["rows"]} \
        if (folder / "peak.json").is_file() else {}
    warm = load(folder, "eval_float32_warm")
    gflop = warm.get("network_gflop") if warm else None
    print(f"machine: matmul peak {peaks.get('float32', float('nan')):.0f} GFLOP/s float32, "
          f"{peaks.get('bfloat16', float('nan')):.0f} GFLOP/s bfloat16 (2048², tools/benchmark.py peak); network "
          f"{gflop or float('nan'):.0f} GFLOP" + (f" at {warm['size'][0]}×{warm['size'][1]}" if warm else ""))
    print()
    print("| case | official s / GB | ours s / GB | faster | memory | network s | floor s | share of floor |")
    print("|---|---|---|---|---|---|---|---|")
    rows = [(label, load(folder, "official_eval"), load(folder, name), name) for name, label in EVAL_CASES]
    rows += [(f"train step, {label}", load(folder, "official_train"), load(folder, name), name)
             for name, label in TRAIN_CASES]
    for label, official, ours, name in rows:
        if ours is None:
            print(f"| {label} | | missing or failed ({name}.json) | | | | | |")
            continue
        ours_s, ours_gb = med(ours["wall_s"]), rss_gb(ours)
        official_text = f"{med(official['wall_s']):.2f} / {rss_gb(official):.2f}" if official else "missing"
        faster = f"{med(official['wall_s']) / ours_s:.2f}×" if official else ""
        memory = f"{ours_gb / rss_gb(official):.2f}×" if official else ""
        floor = share = net = ""
        if name.startswith("eval") and gflop:
            precision = "bfloat16" if "bfloat16" in name else "float32"
            floor_s = gflop / peaks[precision] if precision in peaks else float("nan")
            net_s = network_s(ours)
            net, floor, share = f"{net_s:.2f}", f"{floor_s:.2f}", f"{floor_s / net_s:.0%}"
        print(f"| {label} | {official_text} | {ours_s:.2f} / {ours_gb:.2f} | {faster} | {memory} | {net} | {floor} "
              f"| {share} |")
    loads = [r.get("load_before") for _, _, r, _ in rows if r] + [r.get("load_after") for _, _, r, _ in rows if r]
    loads = [v for v in loads if v is not None]
    if loads:
        print(f"\nload average (1 min) during our cases: {min(loads):.1f}–{max(loads):.1f}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
