#!/usr/bin/env python
"""Train or evaluate OpenSeeD (Detectron2-style command line).

    python tools/train_net.py --config-file configs/openseed/swint_decoupled_coco_o365.yaml --num-gpus 8
    python tools/train_net.py --config-file C --resume                    # continue from OUTPUT_DIR/last_checkpoint
    python tools/train_net.py --config-file C --eval-only MODEL.WEIGHTS W  # evaluate DATASETS.TEST
    python tools/train_net.py --config-file configs/tiny/tiny_decoupled.yaml --num-gpus 2 --dist-url auto  # CPU, gloo

`--num-gpus N` starts N processes per machine on `MODEL.DEVICE` (NCCL on CUDA, gloo on CPU).
Trailing `KEY VALUE` pairs override the config.
"""

from __future__ import annotations

import logging
import os

import torch

from openseed.config import setup_cfg
from openseed.engine import OpenSeeDTrainer, TrainingCheckpointer, default_argument_parser, launch, setup
from openseed.engine.trainer import check_datasets_registered
from openseed.evaluation.evaluate import evaluate

logger = logging.getLogger("openseed")


def evaluate_test_datasets(model: torch.nn.Module, cfg, output_dir: str) -> dict:
    """Evaluate `model` on every dataset of `DATASETS.TEST`, writing results under `output_dir`."""
    return evaluate(model, cfg, list(cfg.DATASETS.TEST), output_dir, force=True)


def main(args) -> dict | None:
    cfg = setup(args)
    if args.eval_only:
        check_datasets_registered(cfg.DATASETS.TEST, "DATASETS.TEST")
        model = OpenSeeDTrainer.build_model(cfg)
        TrainingCheckpointer(model, cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        model.eval()
        with torch.no_grad():
            return evaluate_test_datasets(model, cfg, os.path.join(cfg.OUTPUT_DIR, "inference"))
    evaluate_function = evaluate_test_datasets if cfg.DATASETS.TEST else None
    trainer = OpenSeeDTrainer(cfg, evaluate_function=evaluate_function)
    trainer.resume_or_load(resume=args.resume)
    trainer.train()
    return None


def cli(argv: list[str] | None = None) -> None:
    args = default_argument_parser().parse_args(argv)
    device = setup_cfg(args.config_file or None, args.opts).MODEL.DEVICE  # picks the process-group backend
    launch(
        main,
        args.num_gpus,
        device=device,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )


if __name__ == "__main__":
    cli()
