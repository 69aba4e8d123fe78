#!/usr/bin/env python
"""`make demo`: synthetic data, a few minutes of joint OpenSeeD training, zero-shot evaluation, metrics, pictures.

    python tools/run_demo.py --config-file configs/demo/openseed_demo.yaml --output output/demo
    python tools/run_demo.py --output /tmp/demo --num-train 8 --num-val 4 SOLVER.MAX_ITER 5   # a quick check

1. generates the synthetic datasets under `--datasets-root`/synthetic when missing (deterministic, `--seed`);
2. trains with tools/train_net.py (progress line: iteration, losses, ETA);
3. evaluates with tools/eval_zeroshot.py: panoptic PQ / mask AP / box AP / mIoU on the panoptic val set, box and
   mask AP of the box-only classes, zero-shot AP on class names never seen in training;
4. writes `--output`: model_final.pth, metrics.json (flat), summary.md (also printed), loss_curve.png and
   pictures/*.png (ground truth next to predictions). See openseed/demo/pipeline.py for the layout.
Trailing `KEY VALUE` pairs override the config in training, evaluation and the pictures alike.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import torch
from detectron2.utils.logger import setup_logger

from openseed.data.registration.common import datasets_root
from openseed.data.registration.synthetic import register_synthetic_datasets
from openseed.data.synthetic import ensure_synthetic_datasets
from openseed.demo import gallery, pipeline
from openseed.demo.metrics import collect_metrics, summary_table
from openseed.predictor import Predictor
from openseed.utils.cli import FlagsAnywhereParser
from openseed.utils.malloc import tune_malloc
from openseed.visualization import plot_loss_curve

TOOLS_DIR = Path(__file__).resolve().parent
DEFAULT_CONFIG = TOOLS_DIR.parent / "configs" / "demo" / "openseed_demo.yaml"


def argument_parser() -> argparse.ArgumentParser:
    parser = FlagsAnywhereParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", default=str(DEFAULT_CONFIG), metavar="FILE")
    parser.add_argument("--output", default="output/demo", help="output folder")
    parser.add_argument("--datasets-root", default=None,
                        help="datasets folder; the synthetic sets live in its `synthetic/` (default $DETECTRON2_DATASETS "
                             "or ./datasets)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data generation")
    parser.add_argument("--num-train", type=int, default=300, help="synthetic images per training set")
    parser.add_argument("--num-val", type=int, default=50, help="synthetic images per evaluation set")
    parser.add_argument("--num-pictures", type=int, default=4, help="val images drawn per picture kind")
    parser.add_argument("--num-threads", type=int, default=1,
                        help="intra-op CPU threads of training and evaluation (default 1: the demo's small tensors "
                             "gain little from more, and busy-waiting threads are very slow on a shared machine)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = argument_parser().parse_args(argv)
    tune_malloc()  # large tensors reuse heap memory (openseed.utils.malloc); the tools it runs do the same
    logger = setup_logger(name="openseed", abbrev_name="op")
    paths = pipeline.DemoPaths(Path(args.output).resolve())
    paths.output.mkdir(parents=True, exist_ok=True)
    root = os.path.abspath(args.datasets_root or datasets_root())

    logger.info("[1/4] synthetic datasets")
    synthetic_root = ensure_synthetic_datasets(os.path.join(root, "synthetic"), seed=args.seed,
                                               num_train=args.num_train, num_val=args.num_val)
    register_synthetic_datasets(synthetic_root)
    env = pipeline.child_environment(root, args.num_threads)
    torch.set_num_threads(args.num_threads)

    logger.info("[2/4] training (tools/train_net.py)")
    train_seconds = pipeline.train(TOOLS_DIR, args.config_file, paths, args.opts, env)
    logger.info("[3/4] evaluation (tools/eval_zeroshot.py)")
    pipeline.evaluate(TOOLS_DIR, args.config_file, paths, args.opts, env)

    metrics = collect_metrics(str(paths.eval_dir))
    metrics["train_seconds"] = round(train_seconds, 1)
    pipeline.write_metrics(paths.metrics, metrics)
    table = summary_table(metrics)
    paths.summary.write_text(table + "\n", encoding="utf-8")

    logger.info("[4/4] loss curve and pictures")
    plot_loss_curve(str(paths.train_dir / "metrics.json"), str(paths.loss_curve))
    predictor = Predictor(args.config_file, paths.weights, opts=args.opts)
    pictures = gallery.draw_gallery(predictor, paths.pictures_dir, num_images=args.num_pictures)

    print(f"\nOpenSeeD demo ({paths.output})\n\n{table}\n", flush=True)
    print("files: " + ", ".join(str(p.relative_to(paths.output)) for p in
                                [paths.weights, paths.metrics, paths.summary, paths.loss_curve, *pictures]))
    return metrics


if __name__ == "__main__":
    logging.captureWarnings(True)
    try:
        main()
    except pipeline.DemoStepFailed as error:
        print(f"demo failed: {error}", file=sys.stderr)
        sys.exit(1)
