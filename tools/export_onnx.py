#!/usr/bin/env python
"""Export the inference network to ONNX for a fixed vocabulary, then check it against PyTorch with ONNX Runtime.

    python tools/export_onnx.py --config-file configs/demo/openseed_demo.yaml --weights output/demo/model_final.pth \\
        --vocab "cat,dog,grass" --stuff grass --output output/onnx/demo.onnx
    python tools/export_onnx.py --config-file configs/openseed/swint_decoupled_coco_o365.yaml \\
        --benchmark-vocab coco143 --output output/onnx/swint_coco143.onnx

The graph (backbone, pixel decoder, decoder, heads; text embeddings baked in) accepts any padded image size that is
a multiple of the size divisibility between `--min-size` and `--max-size` (openseed.export). The check runs a
synthetic image of `--check-size` (a size other than the traced `--sample-size`, so the symbolic size is exercised)
through ONNX Runtime and PyTorch, prints the max |Δ| of each raw output and exits non-zero above `--tolerance`.
Use it with `Predictor(config, backend="onnxruntime", onnx_file=...)` or `tools/benchmark.py eval --backend
onnxruntime`. Trailing `KEY VALUE` pairs override the config.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from detectron2.utils.logger import setup_logger

from openseed.benchmarks.inputs import benchmark_vocabulary, build_benchmark_model, synthetic_image
from openseed.export import compare_with_pytorch, export_onnx
from openseed.utils.runtime import tune_cpu_runtime
from openseed.vocabulary import Vocabulary


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--weights", default="", help="checkpoint (default: seeded random init, for benchmarks)")
    vocab = parser.add_mutually_exclusive_group(required=True)
    vocab.add_argument("--vocab", help='comma-separated class names, e.g. "cat,dog,grass"')
    vocab.add_argument("--benchmark-vocab", help="a vocabulary of tools/benchmark.py: coco143, coco, lvis, ...")
    parser.add_argument("--stuff", default="", help="comma-separated names of --vocab that are stuff classes")
    parser.add_argument("--output", required=True, help="the .onnx file to write")
    parser.add_argument("--sample-size", type=int, nargs=2, default=(512, 512), metavar=("H", "W"))
    parser.add_argument("--min-size", type=int, default=128, help="smallest padded side the graph accepts")
    parser.add_argument("--max-size", type=int, default=4096, help="largest padded side the graph accepts")
    parser.add_argument("--check-size", type=int, nargs=2, default=(480, 640), metavar=("H", "W"),
                        help="image of the ONNX Runtime check (0 0: no check)")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="max |Δ| of the check")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="config overrides: KEY VALUE ...")
    return parser


def vocabulary_from_args(args: argparse.Namespace) -> Vocabulary:
    if args.benchmark_vocab:
        return benchmark_vocabulary(args.benchmark_vocab)
    names = [n.strip() for n in args.vocab.split(",") if n.strip()]
    stuff = {n.strip() for n in args.stuff.split(",") if n.strip()}
    unknown = sorted(stuff - set(names))
    if unknown:
        raise SystemExit(f"--stuff {unknown} are not in --vocab")
    return Vocabulary(tuple(names), tuple(n not in stuff for n in names))


def main(argv: list[str] | None = None) -> int:
    args = argument_parser().parse_args(argv)
    tune_cpu_runtime()
    torch.set_num_threads(args.threads)
    logger = setup_logger(name="openseed", abbrev_name="op")
    vocabulary = vocabulary_from_args(args)
    _, model = build_benchmark_model(args.config_file, ["MODEL.DEVICE", "cpu", *args.opts], args.weights, args.seed)
    start = time.perf_counter()
    path = export_onnx(model, vocabulary, args.output, sample_size=tuple(args.sample_size), min_size=args.min_size,
                       max_size=args.max_size)
    logger.info(f"wrote {path} ({path.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - start:.0f} s")
    if not any(args.check_size):
        return 0
    image = synthetic_image(*args.check_size, seed=args.seed)
    differences = compare_with_pytorch(path, model, image, threads=args.threads)
    worst = max(differences.values())
    print(f"max |ONNX Runtime - PyTorch| at {args.check_size[0]}×{args.check_size[1]}: "
          + ", ".join(f"{name} {value:.2e}" for name, value in differences.items()))
    if worst > args.tolerance:
        print(f"check failed: {worst:.2e} > tolerance {args.tolerance:.0e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
