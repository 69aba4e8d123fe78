"""`tools/benchmark.py peak`: the machine's measured matrix-multiply throughput, the floor of the model benchmarks.

A 2048×2048 @ 2048×2048 product (2·2048³ FLOP) in float32 and in bfloat16 on CPU, `--threads` intra-op threads, in
a fresh process; `--warmup` untimed products, then the median GFLOP/s of `--runs` timed ones. A network of F GFLOP
cannot run faster than F / peak seconds in that precision; the side-by-side report (scripts/bench_side_by_side.sh)
states the share of that floor a measured time reaches.
"""

from __future__ import annotations

import argparse
import time

import torch
from tabulate import tabulate

from .common import load_average, median, run_isolated

SIZE = 2048
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def peak_case(*, size: int, dtype: str, runs: int, warmup: int) -> dict:
    """GFLOP/s of size×size matmuls in `dtype` (run in a child process by `run_isolated`)."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(DTYPES[dtype])
    b = torch.randn(size, size, generator=generator).to(DTYPES[dtype])
    out = torch.empty(size, size, dtype=DTYPES[dtype])
    for _ in range(warmup):
        torch.mm(a, b, out=out)
    load_before = load_average()
    gflops = []
    for _ in range(runs):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        gflops.append(2 * size**3 / (time.perf_counter() - start) / 1e9)
    return {"dtype": dtype, "size": size, "gflops": gflops, "load_before": load_before, "load_after": load_average()}


def run_peak_benchmark(*, size: int = SIZE, dtypes=tuple(DTYPES), runs: int = 10, warmup: int = 3,
                       threads: int = 2) -> list[dict]:
    """One row per dtype, each in a fresh process."""
    return [run_isolated(peak_case, dict(size=size, dtype=dtype, runs=runs, warmup=warmup), threads=threads)
            for dtype in dtypes]


def format_peak_rows(rows: list[dict]) -> str:
    headers = ["dtype", "matmul", "median GFLOP/s", "min–max GFLOP/s", "threads", "load 1m"]
    table = [[r["dtype"], f"{r['size']}² @ {r['size']}²", f"{median(r['gflops']):.0f}",
              f"{min(r['gflops']):.0f}–{max(r['gflops']):.0f}", r["threads"],
              f"{r['load_before']:.1f}→{r['load_after']:.1f}"] for r in rows]
    return tabulate(table, headers=headers, tablefmt="github", disable_numparse=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the `peak` subcommand; sets `func`."""
    parser.add_argument("--size", type=int, default=SIZE, help="side of the square matrices")
    parser.add_argument("--dtype", action="append", choices=tuple(DTYPES), default=None,
                        help="repeatable; default float32 and bfloat16")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> list[dict]:
    rows = run_peak_benchmark(size=args.size, dtypes=tuple(args.dtype or DTYPES), runs=args.runs,
                              warmup=args.warmup, threads=args.threads)
    print(format_peak_rows(rows))
    return rows
