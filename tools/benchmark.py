"""Benchmarks: `python tools/benchmark.py <subcommand> [options]`.

Subcommands (each module provides `add_arguments(parser)`, which sets `func`):
    data    training-mapper throughput on CPU (`openseed.utils.benchmark_data`)
"""

from __future__ import annotations

import argparse

from openseed.utils import benchmark_data

SUBCOMMANDS = {
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
