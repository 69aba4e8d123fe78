"""ScanNet / SUN RGB-D label maps with "0 = unannotated, k = k-th class" -> Detectron2 maps (k-1, 255 = ignore).

    python datasets/prepare_offset_labels.py scannet    # scannet_frames_25k/images/<scene>/label{21,38,41}/*.png
                                                        #   -> .../label{21,38,41}_detectron2/*.png
    python datasets/prepare_offset_labels.py sunrgbd    # sun_rgbd/label37/<split>/*.png -> sun_rgbd/label37_detectron2/
"""

from __future__ import annotations

import argparse
import glob
import os
from functools import partial
from multiprocessing import Pool

import numpy as np
from PIL import Image

SUFFIX = "_detectron2"


def shift_labels(labels: np.ndarray) -> np.ndarray:
    """H×W labels 0..K (0 = unannotated) -> uint8 0..K-1 with 255 for unannotated."""
    if labels.max(initial=0) > 255:
        raise ValueError(f"label value {labels.max()} does not fit the 8-bit output")
    return (labels.astype(np.int32) - 1).astype(np.uint8)


def _convert(source: str, label_dir: str) -> None:
    parts = source.split(os.sep)
    index = len(parts) - 1 - parts[::-1].index(label_dir)
    parts[index] = label_dir + SUFFIX
    target = os.sep.join(parts)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    Image.fromarray(shift_labels(np.asarray(Image.open(source)))).save(target)


def label_files(dataset: str, root: str) -> dict[str, list[str]]:
    """`{label folder name: [png files]}` of a dataset under `root` ($DETECTRON2_DATASETS)."""
    if dataset == "scannet":
        base = os.path.join(root, "scannet_frames_25k", "images")
        return {d: sorted(glob.glob(os.path.join(base, "*", d, "*.png"))) for d in ("label21", "label38", "label41")}
    if dataset == "sunrgbd":
        return {"label37": sorted(glob.glob(os.path.join(root, "sun_rgbd", "label37", "*", "*.png")))}
    raise ValueError(f"unknown dataset {dataset!r}; expected scannet or sunrgbd")


def convert(dataset: str, root: str, workers: int = 1) -> dict[str, int]:
    counts = {}
    for label_dir, files in label_files(dataset, root).items():
        work = partial(_convert, label_dir=label_dir)
        if workers > 1:
            with Pool(workers) as pool:
                pool.map(work, files, chunksize=64)
        else:
            for path in files:
                work(path)
        counts[label_dir] = len(files)
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=("scannet", "sunrgbd"))
    parser.add_argument("--root", default=os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets")))
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    counts = convert(args.dataset, args.root, args.workers)
    if not any(counts.values()):
        raise SystemExit(f"no label files found for {args.dataset} under {args.root} (see datasets/README.md)")
    print(counts)


if __name__ == "__main__":
    main()
