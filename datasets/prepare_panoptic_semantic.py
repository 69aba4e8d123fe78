"""Semantic maps from a registered panoptic dataset, for its mIoU evaluation.

Each pixel of a segment gets the segment's contiguous class id (crowd segments included); unlabeled pixels get 255.
Reads the dataset's `panoptic_json`, `panoptic_root` and id maps from its metadata and writes one PNG per image,
named like the panoptic PNG, into its `sem_seg_root`:

    python datasets/prepare_panoptic_semantic.py coco_2017_val_panoptic_with_sem_seg
    python datasets/prepare_panoptic_semantic.py bdd10k_40_panoptic_val scannet_21_panoptic_val

(`coco/panoptic_semseg_{train,val}2017`, `bdd100k/labels/pan_seg/sem_seg_40/<split>`,
`scannet_frames_25k/scannet_panoptic_semseg`; `$DETECTRON2_DATASETS` selects the root.)
"""

from __future__ import annotations

import argparse
import json
import os
from functools import partial
from multiprocessing import Pool

import numpy as np
from PIL import Image

IGNORE_LABEL = 255


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """COCO panoptic encoding: H×W×3 uint8 -> H×W segment ids (R + 256·G + 256²·B)."""
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def panoptic_to_semantic(segment_ids: np.ndarray, segments_info: list[dict], id_map: dict[int, int]) -> np.ndarray:
    """H×W segment ids + the image's `segments_info` -> H×W uint8 contiguous class ids (255 where unlabeled)."""
    semantic = np.full(segment_ids.shape, IGNORE_LABEL, dtype=np.uint8)
    for segment in segments_info:
        semantic[segment_ids == segment["id"]] = id_map[segment["category_id"]]
    return semantic


def _convert_one(annotation: dict, panoptic_root: str, output_root: str, id_map: dict[int, int]) -> None:
    png = annotation["file_name"]
    segment_ids = rgb_to_id(np.asarray(Image.open(os.path.join(panoptic_root, png)).convert("RGB")))
    semantic = panoptic_to_semantic(segment_ids, annotation["segments_info"], id_map)
    out_file = os.path.join(output_root, png)
    os.makedirs(os.path.dirname(out_file), exist_ok=True)
    Image.fromarray(semantic).save(out_file)


def convert_panoptic_json(json_file: str, panoptic_root: str, output_root: str, id_map: dict[int, int],
                          workers: int = 1) -> int:
    """Write one semantic PNG per annotation of `json_file`; returns the number written."""
    with open(json_file, encoding="utf-8") as f:
        annotations = json.load(f)["annotations"]
    os.makedirs(output_root, exist_ok=True)
    work = partial(_convert_one, panoptic_root=panoptic_root, output_root=output_root, id_map=id_map)
    if workers > 1:
        with Pool(workers) as pool:
            pool.map(work, annotations, chunksize=16)
    else:
        for annotation in annotations:
            work(annotation)
    return len(annotations)


def convert_dataset(dataset_name: str, workers: int = 1) -> int:
    """Convert a registered panoptic dataset (see module docstring)."""
    from detectron2.data import MetadataCatalog

    import openseed.data  # noqa: F401  (registers the datasets)

    meta = MetadataCatalog.get(dataset_name)
    for key in ("panoptic_json", "panoptic_root", "sem_seg_root"):
        if not hasattr(meta, key):
            raise ValueError(f"dataset {dataset_name!r} has no {key!r} in its metadata: not a panoptic dataset with "
                             "a semantic root")
    id_map = {**meta.thing_dataset_id_to_contiguous_id, **meta.stuff_dataset_id_to_contiguous_id}
    for path in (meta.panoptic_json, meta.panoptic_root):
        if not os.path.exists(path):
            raise FileNotFoundError(f"dataset {dataset_name!r}: missing {path} (see datasets/README.md)")
    return convert_panoptic_json(meta.panoptic_json, meta.panoptic_root, meta.sem_seg_root, id_map, workers)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="+", help="registered panoptic dataset names")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    for name in args.datasets:
        count = convert_dataset(name, args.workers)
        print(f"{name}: wrote {count} semantic maps")


if __name__ == "__main__":
    main()
