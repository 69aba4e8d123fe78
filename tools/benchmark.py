"""Benchmarks: `python tools/benchmark.py <subcommand> [options]`.

Subcommands (each module provides `add_arguments(parser)`, which sets `func`):
    eval    eval forward of one image, per stage, peak RSS (`openseed.utils.benchmark_eval`)
    text    vocabulary text embeddings, eval ensemble or train step (`openseed.utils.benchmark_text`)
    train   one joint training step, per stage, peak RSS (`openseed.utils.benchmark_train`)
    data    training-mapper throughput on CPU (`openseed.utils.benchmark_data`)

Model benchmarks run each case in a fresh process and report the median of `--runs` timed runs after `--warmup`
untimed ones, CPU seconds, peak RSS, torch threads and the load average of the machine.
"""

from __future__ import annotations

import argparse

from openseed.utils import benchmark_data, benchmark_eval, benchmark_text, benchmark_train

SUBCOMMANDS = {
    "eval": (benchmark_eval, "eval forward of one image: time per stage and peak RSS"),
    "text": (benchmark_text, "text embeddings of a vocabulary (prompt ensemble or training step)"),
    "train": (benchmark_train, "one joint training step: time per stage and peak RSS"),
    "data": (benchmark_data, "training-mapper throughput (images/s) on CPU"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in SUBCOMMANDS.items():
        module.add_arguments(subparsers.add_parser(name, help=help_text))
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
