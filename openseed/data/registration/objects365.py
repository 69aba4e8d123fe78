"""Objects365 v1 and v2 (365 box-only classes): `objects365_v{1,2}_{train,val}`.

Class names are shipped (`vocab/objects365_v{1,2}.json`, typos of the official files kept, whitespace stripped); the
json's categories are matched to them by name. Objects365 v2 jsons name images `images/v{1,2}/patchN/<file>.jpg`;
the images are read from `<image_root>/patchN/<file>.jpg` (the layout of the official download).
"""

from __future__ import annotations

import os

from .coco import load_coco_instances
from .common import read_vocab_file, register

OBJECTS365_FILES = {
    "v1": {split: (f"annotations/objects365_{split}.json", split) for split in ("train", "val")},
    "v2": {split: (f"annotations/zhiyuan_objv2_{split}.json", split) for split in ("train", "val")},
}


def objects365_classes(version: str) -> list[str]:
    return list(read_vocab_file(f"objects365_{version}.json")["classes"])


def _patch_path(image_root: str, image: dict) -> str:
    """`images/v1/patch8/objects365_v1_00420917.jpg` -> `<image_root>/patch8/objects365_v1_00420917.jpg`."""
    parts = image["file_name"].replace("\\", "/").split("/")
    return os.path.join(image_root, *parts[-2:])


def register_objects365(root: str) -> None:
    for version, splits in OBJECTS365_FILES.items():
        classes = objects365_classes(version)
        base = os.path.join(root, "Objects365", version)
        for split, (json_rel, image_rel) in splits.items():
            name = f"objects365_{version}_{split}"
            json_file, image_root = os.path.join(base, json_rel), os.path.join(base, image_rel)
            path_fn = _patch_path if version == "v2" else None
            register(
                name,
                lambda n=name, j=json_file, r=image_root, p=path_fn, c=classes: load_coco_instances(
                    n, j, r, class_names=c, image_path_fn=p),
                tasks=("detection",),
                evaluator_type="object365_od",
                expected_num_classes=365,
                json_file=json_file,
                image_root=image_root,
                thing_classes=classes,
            )
