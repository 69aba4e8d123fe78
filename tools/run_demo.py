#!/usr/bin/env python
"""`make demo`: synthetic data, a few minutes of joint OpenSeeD training, zero-shot evaluation, metrics, pictures.

    python tools/run_demo.py --config-file configs/demo/openseed_demo.yaml --output output/demo
    python tools/run_demo.py --output /tmp/demo --num-train 8 --num-val 4 SOLVER.MAX_ITER 5   # a quick check

1. generates the synthetic datasets under `--datasets-root`/synthetic when missing (deterministic, `--seed`);
2. trains with `openseed.commands.train_net` (progress line: iteration, losses, ETA);
3. evaluates with `openseed.commands.eval_zeroshot`: panoptic PQ / mask AP / box AP / mIoU on the panoptic val set,
   box and mask AP of the box-only classes, zero-shot AP on class names never seen in training;
4. writes `--output`: model_final.pth, metrics.json (flat), summary.md (also printed), loss_curve.png and
   pictures/*.png (ground truth next to predictions). See openseed/demo/pipeline.py (`run_demo`).
Trailing `KEY VALUE` pairs override the config in training, evaluation and the pictures alike.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from detectron2.utils.logger import setup_logger

from openseed.demo.pipeline import DemoSettings, DemoStepFailed, run_demo
from openseed.utils.cli import FlagsAnywhereParser
from openseed.utils.runtime import tune_cpu_runtime

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo" / "openseed_demo.yaml"


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
    tune_cpu_runtime()  # malloc tuning, denormals flushed (openseed.utils.runtime); the commands it runs do the same
    setup_logger(name="openseed", abbrev_name="op")
    return run_demo(DemoSettings(
        config_file=args.config_file, output=args.output, datasets_root=args.datasets_root, seed=args.seed,
        num_train=args.num_train, num_val=args.num_val, num_pictures=args.num_pictures, num_threads=args.num_threads,
        opts=tuple(args.opts)))


if __name__ == "__main__":
    logging.captureWarnings(True)
    try:
        main()
    except DemoStepFailed as error:
        print(f"demo failed: {error}", file=sys.stderr)
        sys.exit(1)
