"""The demo's metrics: which evaluation result is which demo metric, the flat `metrics.json`, targets and the table.

The evaluation (tools/eval_zeroshot.py) stores `<eval_dir>/<dataset>/results.json` with
`{"results": {"panoptic_seg": {"PQ", ...}, "bbox": {"AP", ...}, "segm": {"AP", ...}, "sem_seg": {"mIoU", ...}}}`
(metrics on the 0–100 scale, as the libraries report them). `DEMO_METRICS` names the demo metric of each value.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

PANOPTIC_VAL = "synthetic_panoptic_val"
BOX_ONLY_VAL = "synthetic_boxes_val"  # box annotations only: detection (box AP)
BOX_ONLY_MASK_VAL = "synthetic_boxes_val_masks"  # the same images with masks: mask AP of the box-only classes
ZERO_SHOT_VAL = "synthetic_zeroshot_val"  # class names that occur in no training set
EVAL_DATASETS = (PANOPTIC_VAL, BOX_ONLY_VAL, BOX_ONLY_MASK_VAL, ZERO_SHOT_VAL)


@dataclass(frozen=True)
class DemoMetric:
    """Demo metric `key` = `results[dataset][group][name]` of the evaluation; `target` is the issue's goal."""

    key: str
    dataset: str
    group: str
    name: str
    description: str
    target: float | None = None


DEMO_METRICS = (
    DemoMetric("panoptic/PQ", PANOPTIC_VAL, "panoptic_seg", "PQ", "panoptic quality, things + stuff", 50.0),
    DemoMetric("panoptic/PQ_th", PANOPTIC_VAL, "panoptic_seg", "PQ_th", "panoptic quality, things"),
    DemoMetric("panoptic/PQ_st", PANOPTIC_VAL, "panoptic_seg", "PQ_st", "panoptic quality, stuff"),
    DemoMetric("panoptic/mask_AP", PANOPTIC_VAL, "segm", "AP", "instance mask AP (panoptic val)"),
    DemoMetric("panoptic/box_AP", PANOPTIC_VAL, "bbox", "AP", "box AP (panoptic val)"),
    DemoMetric("panoptic/mIoU", PANOPTIC_VAL, "sem_seg", "mIoU", "semantic mIoU (panoptic val)"),
    DemoMetric("box_only/box_AP", BOX_ONLY_VAL, "bbox", "AP", "box AP of the box-only classes", 40.0),
    DemoMetric("box_only/mask_AP", BOX_ONLY_MASK_VAL, "segm", "AP",
               "mask AP of the box-only classes (never had mask labels)", 20.0),
    DemoMetric("zero_shot/AP", ZERO_SHOT_VAL, "segm", "AP", "mask AP, class names unseen in training", 10.0),
    DemoMetric("zero_shot/box_AP", ZERO_SHOT_VAL, "bbox", "AP", "box AP, class names unseen in training"),
)
TRAIN_SECONDS_TARGET = 600.0  # the budget: training in at most ten minutes on 2 CPU cores
REQUIRED_KEYS = ("panoptic/PQ", "panoptic/mask_AP", "panoptic/box_AP", "panoptic/mIoU", "box_only/box_AP",
                 "box_only/mask_AP", "zero_shot/AP", "train_seconds")


def read_results(eval_dir: str, dataset: str) -> dict:
    """`results` of `<eval_dir>/<dataset>/results.json`; a missing file raises naming it."""
    path = os.path.join(eval_dir, dataset, "results.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"evaluation results {path} do not exist: the evaluation of {dataset} did not finish")
    with open(path, encoding="utf-8") as f:
        return json.load(f)["results"]


def collect_metrics(eval_dir: str) -> dict[str, float | None]:
    """The flat demo metrics `{key: value}` from the evaluation folder (None where a library gave no number)."""
    results = {dataset: read_results(eval_dir, dataset) for dataset in EVAL_DATASETS}
    flat = {}
    for metric in DEMO_METRICS:
        group = results[metric.dataset].get(metric.group)
        if group is None or metric.name not in group:
            raise KeyError(f"{metric.dataset}: the evaluation has no {metric.group}/{metric.name} "
                           f"(it has {sorted(results[metric.dataset])}) for the demo metric {metric.key}")
        value = group[metric.name]
        flat[metric.key] = None if value is None else float(value)
    return flat


def summary_rows(metrics: dict) -> list[tuple[str, str, str, str, str]]:
    """(metric, value, target, status, description) per demo metric, then the training time."""
    rows = []
    for metric in DEMO_METRICS:
        value = metrics.get(metric.key)
        shown = "n/a" if value is None else f"{value:.1f}"
        if metric.target is None:
            target, status = "", ""
        else:
            target = f"≥ {metric.target:g}"
            status = "met" if value is not None and value >= metric.target else "NOT met"
        rows.append((metric.key, shown, target, status, metric.description))
    seconds = metrics.get("train_seconds")
    if seconds is not None:
        status = "met" if seconds <= TRAIN_SECONDS_TARGET else "NOT met"
        rows.append(("train_seconds", f"{seconds:.0f}", f"≤ {TRAIN_SECONDS_TARGET:g}", status,
                     "training wall time (train_net.py)"))
    return rows


def summary_table(metrics: dict) -> str:
    """The demo summary as a markdown table."""
    header = ("metric", "value", "target", "status", "what it measures")
    rows = [header, tuple("---" for _ in header)] + summary_rows(metrics)
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)
