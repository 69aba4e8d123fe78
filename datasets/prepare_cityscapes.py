"""Cityscapes `*_gtFine_labelIds.png` -> `*_gtFine_labelTrainIds.png` (19 train ids, 255 = ignore).

The same maps cityscapesScripts' `createTrainIdLabelImgs` writes, from Detectron2's `CITYSCAPES_CATEGORIES`.
The panoptic files (`gtFine/cityscapes_panoptic_<split>{.json,/}`) come from cityscapesScripts'
`createPanopticImgs`.

    python datasets/prepare_cityscapes.py [--root datasets/cityscapes]
"""

from __future__ import annotations

import argparse
import glob
import os
from functools import partial
from multiprocessing import Pool

import numpy as np
from detectron2.data.datasets.builtin_meta import CITYSCAPES_CATEGORIES
from PIL import Image


def train_id_lookup() -> np.ndarray:
    """256-entry table: label id -> train id (255 for classes not evaluated)."""
    table = np.full(256, 255, dtype=np.uint8)
    for category in CITYSCAPES_CATEGORIES:
        table[category["id"]] = category["trainId"]
    return table


def _convert(path: str, table: np.ndarray) -> None:
    labels = np.asarray(Image.open(path))
    Image.fromarray(table[labels]).save(path.replace("_labelIds.png", "_labelTrainIds.png"))


def convert(root: str, workers: int = 1) -> int:
    files = sorted(glob.glob(os.path.join(root, "gtFine", "*", "*", "*_gtFine_labelIds.png")))
    work = partial(_convert, table=train_id_lookup())
    if workers > 1:
        with Pool(workers) as pool:
            pool.map(work, files, chunksize=16)
    else:
        for path in files:
            work(path)
    return len(files)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = os.path.join(os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets")), "cityscapes")
    parser.add_argument("--root", default=default)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    count = convert(args.root, args.workers)
    if count == 0:
        raise SystemExit(f"no *_gtFine_labelIds.png under {args.root}/gtFine (see datasets/README.md)")
    print(f"wrote {count} train-id maps")


if __name__ == "__main__":
    main()
