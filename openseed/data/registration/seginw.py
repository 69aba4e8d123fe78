"""SegInW, segmentation in the wild (25 sets, X-Decoder's benchmark): instance mask AP per set.

Names: `seginw_<Set>_{val,train}`, e.g. `seginw_Airplane-Parts_val`; the 25 set names are shipped
(`vocab/seginw.json`). Files: `seginw/<Set>/{valid,train}/_annotations_min1cat.coco.json` with the images beside
it. No licensed offline source ships the class names: they are read from each set's annotation file (Roboflow's
parent category, which every real category names as supercategory, is dropped).
"""

from __future__ import annotations

import os
from functools import lru_cache

from .coco import load_coco_instances, read_categories
from .common import read_vocab_file, register, register_class_resolver

SEGINW_ANNOTATION_FILE = "_annotations_min1cat.coco.json"
SEGINW_SPLIT_DIRS = {"val": "valid", "train": "train"}


@lru_cache(maxsize=1)
def seginw_sets() -> tuple[str, ...]:
    return tuple(read_vocab_file("seginw.json")["sets"])


def seginw_dataset_names(split: str = "val") -> tuple[str, ...]:
    return tuple(f"seginw_{s}_{split}" for s in seginw_sets())


def register_seginw(root: str) -> None:
    for set_name in seginw_sets():
        for split, dirname in SEGINW_SPLIT_DIRS.items():
            image_root = os.path.join(root, "seginw", set_name, dirname)
            json_file = os.path.join(image_root, SEGINW_ANNOTATION_FILE)
            name = f"seginw_{set_name}_{split}"
            register(
                name,
                lambda n=name, j=json_file, r=image_root: load_coco_instances(n, j, r),
                tasks=("instance",),
                evaluator_type="coco",
                expected_num_classes=None,
                vocabulary_source="annotations",
                json_file=json_file,
                image_root=image_root,
                suite="seginw",
            )
            register_class_resolver(name, lambda n=name, j=json_file: read_categories(n, j, None))
