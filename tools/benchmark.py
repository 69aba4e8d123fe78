"""Benchmarks: `python tools/benchmark.py <subcommand> [options]`.

Subcommands (each module provides `add_arguments(parser)`, which sets `func`):
    eval    eval forward of one image, per stage, peak RSS (`openseed.benchmarks.eval`)
    text    vocabulary text embeddings, eval ensemble or train step (`openseed.benchmarks.text`)
    train   one joint training step, per stage, peak RSS (`openseed.benchmarks.train`)
    data    training-mapper throughput on CPU (`openseed.benchmarks.data`)
    peak    measured float32 / bfloat16 matmul GFLOP/s of the machine (`openseed.benchmarks.peak`)

Model benchmarks run each case in a fresh process and report the median of `--runs` timed runs after `--warmup`
untimed ones, CPU seconds, peak RSS, torch threads and the load average of the machine. `--json FILE` (before the
subcommand) also writes the rows, every measured value included, as JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from openseed.benchmarks import data as benchmark_data
from openseed.benchmarks import eval as benchmark_eval
from openseed.benchmarks import peak as benchmark_peak
from openseed.benchmarks import text as benchmark_text
from openseed.benchmarks import train as benchmark_train

SUBCOMMANDS = {
    "eval": (benchmark_eval, "eval forward of one image: time per stage and peak RSS"),
    "text": (benchmark_text, "text embeddings of a vocabulary (prompt ensemble or training step)"),
    "train": (benchmark_train, "one joint training step: time per stage and peak RSS"),
    "data": (benchmark_data, "training-mapper throughput (images/s) on CPU"),
    "peak": (benchmark_peak, "measured float32 / bfloat16 GFLOP/s of a 2048² matmul"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default="", help="also write the result rows to this JSON file")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in SUBCOMMANDS.items():
        module.add_arguments(subparsers.add_parser(name, help=help_text))
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    rows = args.func(args)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"command": args.command, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
