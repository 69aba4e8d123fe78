"""`python -m openseed.data.synthetic --root datasets/synthetic [--seed 0] [--num-train 300] [--num-val 50]
[--family ablation]`."""

from __future__ import annotations

import argparse
import logging
import time

from .ablation import FAMILIES
from .generate import default_synthetic_root, generate_synthetic_datasets


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the synthetic datasets (deterministic given --seed).")
    parser.add_argument("--root", default=None,
                        help="output folder (default: $DETECTRON2_DATASETS/synthetic, or synthetic_ablation)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-train", type=int, default=300, help="images per training set")
    parser.add_argument("--num-val", type=int, default=50, help="images per evaluation set")
    parser.add_argument("--family", choices=FAMILIES, default="demo",
                        help="demo sets, or the ablation benchmark (openseed/data/synthetic/ablation.py)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    start = time.perf_counter()
    root = generate_synthetic_datasets(args.root or default_synthetic_root(args.family), seed=args.seed,
                                       num_train=args.num_train, num_val=args.num_val, family=args.family)
    print(f"synthetic datasets written to {root} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
