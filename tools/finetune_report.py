#!/usr/bin/env python
"""Forgetting report: evaluate the model before fine-tuning and each fine-tuned run on the target set(s) and on a
held-out open-vocabulary suite, and write one table (target gain, open-vocabulary loss, per task).

    python tools/finetune_report.py --config-file configs/finetune/synthetic_custom.yaml \\
        --before output/demo/model_final.pth --run full=output/ft_full --run adapter=output/ft_adapter \\
        --output output/ft_report

`--run NAME=DIR`: a fine-tuning OUTPUT_DIR; `DIR/adapter_final.safetensors` (applied on `--before`) when present,
else `DIR/model_final.pth`. `--target` (default: the config's DATASETS.CUSTOM names ending in `_val`) are evaluated
with mask AP and box AP; the open-vocabulary suite (default: the `make demo` sets) with the demo's metrics: zero-shot
mask AP (class names never trained on) and the pre-training tasks (panoptic PQ, box-only box/mask AP).
Results go to `DIR/<run>/<dataset>/results.json` (re-used when the weights are unchanged; `--force` re-runs), the
table to `--output`/report.md and report.json (printed too). Trailing `KEY VALUE` pairs override the config.
"""

from __future__ import annotations

import argparse
import logging
import os

import torch
from detectron2.modeling import build_model
from detectron2.utils.logger import setup_logger

import openseed.modeling  # noqa: F401  (registers the meta-architecture)
from openseed.checkpoint import load_model_weights
from openseed.config import setup_cfg
from openseed.data.registration.custom_coco import parse_custom_entry, register_custom_datasets
from openseed.demo.metrics import BOX_ONLY_MASK_VAL, BOX_ONLY_VAL, PANOPTIC_VAL, ZERO_SHOT_VAL
from openseed.evaluation import evaluate
from openseed.evaluation.forgetting import FinetuneRun, ReportTask, build_report, training_facts, write_report
from openseed.utils.runtime import tune_cpu_runtime

OPEN_VOCABULARY_TASKS = (
    ReportTask("open-vocabulary", ZERO_SHOT_VAL, "segm", "AP", "zero-shot names: mask AP"),
    ReportTask("open-vocabulary", ZERO_SHOT_VAL, "bbox", "AP", "zero-shot names: box AP"),
    ReportTask("pre-training", PANOPTIC_VAL, "panoptic_seg", "PQ", "panoptic: PQ"),
    ReportTask("pre-training", BOX_ONLY_VAL, "bbox", "AP", "box-only classes: box AP"),
    ReportTask("pre-training", BOX_ONLY_MASK_VAL, "segm", "AP", "box-only classes: mask AP"),
)


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, metavar="FILE", help="the fine-tuning config")
    parser.add_argument("--before", required=True, help="weights before fine-tuning (the pre-trained model)")
    parser.add_argument("--run", action="append", required=True, metavar="NAME=DIR",
                        help="a fine-tuning output folder; repeatable")
    parser.add_argument("--target", nargs="+", default=[], help="target evaluation datasets")
    parser.add_argument("--output", required=True, help="output folder")
    parser.add_argument("--force", action="store_true", help="re-evaluate stored results")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser


def parse_runs(entries: list[str], before: str) -> list[FinetuneRun]:
    runs = []
    for entry in entries:
        name, separator, output_dir = entry.partition("=")
        if not separator or not name or not output_dir:
            raise ValueError(f"--run {entry!r}: expected NAME=DIR")
        runs.append(FinetuneRun.from_output_dir(name, output_dir, before))
    if len({run.name for run in runs}) != len(runs):
        raise ValueError(f"--run names must differ: {[run.name for run in runs]}")
    return runs


def target_tasks(cfg, targets: list[str]) -> list[ReportTask]:
    names = targets or [parse_custom_entry(e)[0] for e in cfg.DATASETS.CUSTOM if parse_custom_entry(e)[0].endswith("_val")]
    if not names:
        raise ValueError("no target dataset: give --target or a DATASETS.CUSTOM entry named *_val")
    return [ReportTask("target", name, group, "AP", f"{name}: {kind} AP")
            for name in names for group, kind in (("segm", "mask"), ("bbox", "box"))]


def evaluate_weights(cfg, weights: str, adapter: str, datasets: list[str], output_dir: str, force: bool) -> dict:
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.WEIGHTS, cfg.MODEL.ADAPTER_WEIGHTS = weights, adapter
    cfg.freeze()
    model = build_model(cfg)
    load_model_weights(model, cfg)
    model.eval()
    with torch.no_grad():
        return evaluate(model, cfg, datasets, output_dir, force=force)


def main(argv: list[str] | None = None) -> dict:
    args = argument_parser().parse_args(argv)
    tune_cpu_runtime()
    logger = setup_logger(name="openseed", abbrev_name="op")
    setup_logger(name="detectron2", abbrev_name="d2")
    runs = parse_runs(args.run, args.before)
    cfg = setup_cfg(args.config_file, list(args.opts) + [
        "MODEL.TEXT.CACHE_DIR", os.path.join(args.output, "text_cache")])
    register_custom_datasets(cfg)
    tasks = target_tasks(cfg, args.target) + list(OPEN_VOCABULARY_TASKS)
    datasets = list(dict.fromkeys(task.dataset for task in tasks))
    logger.info(f"evaluating the model before fine-tuning ({args.before}) on {datasets}")
    before = evaluate_weights(cfg, args.before, "", datasets, os.path.join(args.output, "before"), args.force)
    after, facts = {}, {}
    for run in runs:
        logger.info(f"evaluating run {run.name!r}: {run.weights}{' + ' + run.adapter if run.adapter else ''}")
        after[run.name] = evaluate_weights(cfg, run.weights, run.adapter, datasets,
                                           os.path.join(args.output, run.name), args.force)
        facts[run.name] = training_facts(run)
    report = build_report(tasks, before, after, facts)
    report["before"] = {"weights": args.before, "weights_bytes": os.path.getsize(args.before)}
    markdown = write_report(report, args.output)
    print(markdown, flush=True)
    logging.getLogger("openseed").info(f"report written to {args.output}/report.md and report.json")
    return report


if __name__ == "__main__":
    main()
