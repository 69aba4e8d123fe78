"""Zero-shot evaluation of one set of weights on evaluation suites or named datasets (docs/official_behaviours.md §10.6, §13).

    python tools/eval_zeroshot.py --config-file configs/openseed/swint_decoupled_coco_o365.yaml \\
        --weights output/model_final.pth --suite ade20k lvis odinw13 --output output/zeroshot
    python tools/eval_zeroshot.py --config-file C --weights W --datasets ade20k_panoptic_val --output DIR --force
    python tools/eval_zeroshot.py --config-file configs/tiny/tiny_decoupled.yaml --suite synthetic --output DIR

Suites: see `openseed.data.registration.suites` (coco, ade20k, ade20k_full, lvis, odinw13, odinw35, seginw,
cityscapes, bdd, scannet, sunrgbd, pascal_context, objects365, zeroshot, synthetic). Each dataset is evaluated with
its frozen protocol (`openseed.evaluation.protocols`); `DIR/<dataset>/results.json` holds its metrics and datasets
already evaluated with the same protocol and weights are re-used unless `--force`. At the end the markdown summary
(paper numbers in parentheses) is printed and written to `DIR/summary.md` / `DIR/summary.json`. Text embeddings of
each vocabulary are cached in `DIR/text_cache` (keyed by the text-encoder weights and the names) unless the config
sets `MODEL.TEXT.CACHE_DIR`, so evaluating the same weights again does not re-encode the prompts.
`--num-gpus N` runs N processes (NCCL on CUDA, gloo on CPU). Trailing `KEY VALUE` pairs override the config; put
them after an option that takes one value (e.g. `--output DIR MODEL.DEVICE cuda`), not after `--suite`/`--datasets`.
"""

from __future__ import annotations

import argparse
import logging
import os

import torch
from detectron2.modeling import build_model
from detectron2.utils import comm

import openseed.modeling  # noqa: F401  (registers the meta-architecture)
from openseed.checkpoint import load_model_weights
from openseed.config import setup_cfg
from openseed.data.registration.custom_coco import register_custom_datasets
from openseed.data.registration.suites import SUITE_NAMES, suite_datasets
from openseed.engine import launch, setup
from openseed.engine.trainer import check_datasets_registered
from openseed.evaluation import evaluate, paper_model_for, write_summary
from openseed.utils.cli import FlagsAnywhereParser
from openseed.utils.runtime import tune_cpu_runtime

logger = logging.getLogger("openseed")
TEXT_CACHE_SUBDIR = "text_cache"


def argument_parser() -> argparse.ArgumentParser:
    parser = FlagsAnywhereParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", default="", metavar="FILE", help="config YAML (with _BASE_ inheritance)")
    parser.add_argument("--weights", default="", help="checkpoint to evaluate (default: MODEL.WEIGHTS)")
    parser.add_argument("--suite", nargs="+", default=[], choices=SUITE_NAMES, help="evaluation suites")
    parser.add_argument("--datasets", nargs="+", default=[], help="registered dataset names")
    parser.add_argument("--output", required=True, help="output folder (results per dataset, summary)")
    parser.add_argument("--force", action="store_true", help="re-evaluate datasets that have stored results")
    parser.add_argument("--paper-model", choices=("auto", "T", "L", "none"), default="auto",
                        help="which paper row the summary shows beside ours (auto: L for Swin-L, else T)")
    parser.add_argument("--num-gpus", type=int, default=1, help="processes per machine")
    parser.add_argument("--num-machines", type=int, default=1)
    parser.add_argument("--machine-rank", type=int, default=0)
    parser.add_argument("--dist-url", default="auto", help="'auto' picks a free local port (one machine)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser


def dataset_names(suites: list[str], datasets: list[str]) -> list[str]:
    """The datasets of the suites, then the named datasets, each once, in order."""
    names = [name for suite in suites for name in suite_datasets(suite)] + list(datasets)
    if not names:
        raise ValueError("nothing to evaluate: give --suite and/or --datasets")
    return list(dict.fromkeys(names))


def config_overrides(args: argparse.Namespace) -> list[str]:
    """Command-line `KEY VALUE`s, the output folder, the weights, and a disk cache for the vocabularies' text
    embeddings in `DIR/text_cache` unless the config names one (`MODEL.TEXT.CACHE_DIR`)."""
    overrides = list(args.opts) + ["OUTPUT_DIR", args.output]
    overrides += ["MODEL.WEIGHTS", args.weights] if args.weights else []
    if not setup_cfg(args.config_file or None, overrides).MODEL.TEXT.CACHE_DIR:
        overrides += ["MODEL.TEXT.CACHE_DIR", os.path.join(args.output, TEXT_CACHE_SUBDIR)]
    return overrides


def main(args: argparse.Namespace) -> dict:
    """Evaluate in this process (one of `--num-gpus`); returns the metrics on the main process, {} elsewhere."""
    tune_cpu_runtime()  # malloc tuning, denormals flushed (openseed.utils.runtime)
    cfg = setup(argparse.Namespace(config_file=args.config_file, opts=config_overrides(args), eval_only=True))
    register_custom_datasets(cfg)
    names = dataset_names(args.suite, args.datasets)
    check_datasets_registered(names, "--suite/--datasets")
    model = build_model(cfg)
    if cfg.MODEL.WEIGHTS:
        load_model_weights(model, cfg)
        adapter = f" + adapter {cfg.MODEL.ADAPTER_WEIGHTS}" if cfg.MODEL.ADAPTER_WEIGHTS else ""
        logger.info(f"evaluating weights {cfg.MODEL.WEIGHTS}{adapter}")
    else:
        logger.warning("no --weights and no MODEL.WEIGHTS: evaluating a randomly initialised model")
    model.eval()
    with torch.no_grad():
        results = evaluate(model, cfg, names, args.output, force=args.force)
    if comm.is_main_process():
        paper_model = {"auto": paper_model_for(cfg), "none": None}.get(args.paper_model, args.paper_model)
        summary = write_summary(results, args.output, paper_model)
        print(summary["markdown"], flush=True)
    return results


def cli(argv: list[str] | None = None) -> None:
    args = argument_parser().parse_args(argv)
    dataset_names(args.suite, args.datasets)
    device = setup_cfg(args.config_file or None, config_overrides(args)).MODEL.DEVICE
    launch(main, args.num_gpus, device=device, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))


if __name__ == "__main__":
    cli()
