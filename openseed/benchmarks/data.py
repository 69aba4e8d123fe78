"""`tools/benchmark.py data`: training-mapper throughput (images/s) on CPU, median of several timed runs.

Each mapper runs on the records of its dataset (default: the synthetic panoptic and box sets, generated when
missing) after warm-up calls; a run maps `--images` records; throughput per run = images / seconds. Torch runs with
one thread, as in a data-loader worker process.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from detectron2.data import DatasetCatalog
from tabulate import tabulate

from ..config import get_cfg
from ..data.mappers import build_mapper
from ..data.registration.synthetic import register_synthetic_datasets
from ..data.synthetic import ensure_synthetic_datasets

DEFAULT_CASES = (("coco_panoptic_lsj", "synthetic_panoptic_train"), ("objects365_lsj", "synthetic_boxes_train"))


def mapper_throughput(mapper, records: list[dict], *, images: int, runs: int, warmup: int) -> list[float]:
    """Images per second of `runs` timed runs of `images` calls each, after `warmup` untimed calls."""
    for k in range(warmup):
        mapper(records[k % len(records)])
    rates, position = [], 0
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(images):
            mapper(records[position % len(records)])
            position += 1
        rates.append(images / (time.perf_counter() - start))
    return rates


def run_data_benchmark(*, image_size: int = 1024, images: int = 20, runs: int = 5, warmup: int = 5, seed: int = 0,
                       cases=DEFAULT_CASES, synthetic_root: str | None = None) -> list[dict]:
    """One row per (mapper, dataset): median/min/max images/s and the mean number of instances per sample."""
    if any(name.startswith("synthetic_") for _, name in cases):
        register_synthetic_datasets(ensure_synthetic_datasets(synthetic_root))
    cfg = get_cfg()
    cfg.INPUT.IMAGE_SIZE = image_size
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows = []
    try:
        for mapper_name, dataset_name in cases:
            records = DatasetCatalog.get(dataset_name)
            mapper = build_mapper(mapper_name, cfg, is_train=True, dataset_name=dataset_name)
            np.random.seed(seed)
            rates = mapper_throughput(mapper, records, images=images, runs=runs, warmup=warmup)
            instances = [len(mapper(r)["instances"]) for r in records[:images]]
            rows.append({"mapper": mapper_name, "dataset": dataset_name, "image_size": image_size,
                         "median_images_per_s": statistics.median(rates), "min_images_per_s": min(rates),
                         "max_images_per_s": max(rates), "runs": runs, "instances_per_image": float(np.mean(instances))})
    finally:
        torch.set_num_threads(threads)
    return rows


def format_rows(rows: list[dict]) -> str:
    headers = ["mapper", "dataset", "canvas", "median img/s", "min", "max", "runs", "inst/img"]
    table = [[r["mapper"], r["dataset"], f"{r['image_size']}²", f"{r['median_images_per_s']:.1f}",
              f"{r['min_images_per_s']:.1f}", f"{r['max_images_per_s']:.1f}", r["runs"],
              f"{r['instances_per_image']:.1f}"] for r in rows]
    return tabulate(table, headers=headers, tablefmt="github")


def _parse_case(text: str) -> tuple[str, str]:
    mapper, _, dataset = text.partition(":")
    if not mapper or not dataset:
        raise argparse.ArgumentTypeError(f"--case {text!r} must be 'mapper_name:dataset_name'")
    return mapper, dataset


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the `data` subcommand; sets `func`."""
    parser.add_argument("--image-size", type=int, default=1024, help="LSJ canvas (INPUT.IMAGE_SIZE)")
    parser.add_argument("--images", type=int, default=20, help="images per timed run")
    parser.add_argument("--runs", type=int, default=5, help="timed runs (the median is reported)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls before timing")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--case", type=_parse_case, action="append", default=None,
                        help="mapper_name:dataset_name (repeatable); default: the COCO- and O365-LSJ mappers on "
                             "the synthetic panoptic and box sets")
    parser.add_argument("--synthetic-root", default=None, help="synthetic datasets root (generated when missing)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> list[dict]:
    rows = run_data_benchmark(image_size=args.image_size, images=args.images, runs=args.runs, warmup=args.warmup,
                              seed=args.seed, cases=tuple(args.case or DEFAULT_CASES),
                              synthetic_root=args.synthetic_root)
    print(format_rows(rows))
    return rows
