"""Command line and per-process setup for the training and evaluation tools.

`default_argument_parser()` is Detectron2's (`--config-file`, `--resume`, `--eval-only`, `--num-gpus`,
`--num-machines`, `--machine-rank`, `--dist-url`, trailing `KEY VALUE` overrides; the flags may stand anywhere,
see `openseed.utils.cli`). `setup(args)` builds the frozen
config (unknown keys fail naming the key), creates `OUTPUT_DIR` (failing at once when it cannot be written), sets up logging (console + `OUTPUT_DIR/log.txt`,
`log.txt.rank{r}` on other ranks), writes `OUTPUT_DIR/config.yaml` and seeds every generator with `SEED + rank`
(a random seed, logged, when `SEED < 0`).
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile

import torch
from detectron2.engine import default_argument_parser as d2_default_argument_parser
from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng
from detectron2.utils.logger import setup_logger

from openseed.config import setup_cfg
from openseed.utils.cli import FlagsAnywhereParser


def default_argument_parser(epilog: str | None = None) -> argparse.ArgumentParser:
    """Detectron2's training arguments (see the module docstring); the flags may also follow the overrides."""
    detectron2_parser = d2_default_argument_parser(epilog)
    return FlagsAnywhereParser(
        parents=[detectron2_parser], add_help=False, epilog=detectron2_parser.epilog,
        formatter_class=detectron2_parser.formatter_class,
    )


def check_output_dir(output_dir: str) -> None:
    """Create `output_dir` if needed and check that files can be written in it; else raise `OSError` naming it
    (before any model is built or step taken: checkpoints, logs and metrics go there)."""
    try:
        os.makedirs(output_dir, exist_ok=True)
        with tempfile.TemporaryFile(dir=output_dir):
            pass
    except OSError as error:
        raise OSError(error.errno, f"OUTPUT_DIR {output_dir!r} cannot be created or written ({error.strerror or error}); "
                      "training writes its checkpoints, logs and metrics there: choose a writable directory") from None


def setup(args: argparse.Namespace):
    """The frozen config of `args` with logging, output directory and seeds set up for this process."""
    cfg = setup_cfg(args.config_file or None, args.opts)
    rank = comm.get_rank()
    if comm.is_main_process():
        check_output_dir(cfg.OUTPUT_DIR)
    comm.synchronize()
    for name in ("detectron2", "fvcore", "openseed"):
        setup_logger(cfg.OUTPUT_DIR, distributed_rank=rank, name=name, abbrev_name=name[:2])
    logger = logging.getLogger("openseed")
    logger.info(f"Rank {rank} of {comm.get_world_size()} (pid {os.getpid()}); command line arguments: {args}")
    if comm.is_main_process():
        path = os.path.join(cfg.OUTPUT_DIR, "config.yaml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(cfg.dump())
        logger.info(f"Full config saved to {path}")
    seed = cfg.SEED if cfg.SEED >= 0 else None
    seed_all_rng(None if seed is None else seed + rank)
    torch.backends.cudnn.benchmark = cfg.CUDNN_BENCHMARK and not args.eval_only
    return cfg
