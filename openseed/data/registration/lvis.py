"""LVIS v1 (1203 classes): `lvis_v1_minival`, `lvis_v1_val` (evaluation) and `lvis_v1_train`.

Images are COCO 2017 images under `coco/`; each image's path comes from its `coco_url` (`.../val2017/x.jpg` ->
`coco/val2017/x.jpg`, Detectron2's LVIS loader). `datasets/prepare_lvis.py` builds the minival json from
`lvis_v1_val.json`. Class names: the first synonym of each LVIS category (Detectron2's shipped
`LVIS_V1_CATEGORIES`), with "_" written as a space.
"""

from __future__ import annotations

import os

from detectron2.data.datasets.lvis import load_lvis_json
from detectron2.data.datasets.lvis_v1_categories import LVIS_CATEGORIES as LVIS_V1_CATEGORIES
from detectron2.data.datasets.lvis_v1_category_image_count import LVIS_CATEGORY_IMAGE_COUNT

from .common import register, require_files

LVIS_FILES = {
    "lvis_v1_train": "lvis/lvis_v1_train.json",
    "lvis_v1_val": "lvis/lvis_v1_val.json",
    "lvis_v1_minival": "lvis/lvis_v1_minival.json",
}


def lvis_v1_class_names() -> list[str]:
    categories = sorted(LVIS_V1_CATEGORIES, key=lambda c: c["id"])
    return [c["synonyms"][0].replace("_", " ") for c in categories]


def load_lvis(dataset_name: str, json_file: str, image_root: str) -> list[dict]:
    """Detectron2's LVIS loader (category ids 1..1203 -> 0..1202, polygons, not-exhaustive / negative ids)."""
    require_files(dataset_name, json_file, image_root)
    return load_lvis_json(json_file, image_root)


def register_lvis(root: str) -> None:
    image_root = os.path.join(root, "coco") + os.sep
    names = lvis_v1_class_names()
    for name, json_rel in LVIS_FILES.items():
        json_file = os.path.join(root, json_rel)
        register(
            name,
            lambda n=name, j=json_file: load_lvis(n, j, image_root),
            tasks=("instance",),
            evaluator_type="lvis",
            expected_num_classes=1203,
            json_file=json_file,
            image_root=image_root,
            thing_classes=names,
            thing_dataset_id_to_contiguous_id={i + 1: i for i in range(len(names))},
            class_image_count=LVIS_CATEGORY_IMAGE_COUNT,
        )
