"""ADE20K (SceneParsing, 150 classes: 100 things + 50 stuff) and ADE20K-full (847 classes).

- `ade20k_panoptic_{train,val}`: panoptic json/PNGs made by `datasets/prepare_ade20k.py` (category ids 0..149 =
  the semantic ids, as in Mask2Former's conversion), with semantic maps and the instance json for AP.
- `ade20k_instance_{train,val}`: COCO-format instance json (100 thing classes, category ids = semantic ids 0..149).
- `ade20k_sem_seg_{train,val}`: semantic PNGs 0..149, 255 = ignore (`annotations_detectron2/`).
- `ade20k_full_sem_seg_{train,val}`: ADE20K_2021_17_01 converted to 16-bit TIFF labels 0..846 (65535 = ignore); the
  847 class names are read from `ADE20K_2021_17_01/ade20k_full_classes.txt` (no licensed offline source ships them).
"""

from __future__ import annotations

import os

from .coco import load_coco_instances, load_coco_panoptic
from .common import (
    load_sem_seg_folder,
    read_class_list,
    read_vocab_file,
    register,
    register_class_resolver,
    register_sem_seg_folder,
    set_class_metadata,
)

ADE_SPLITS = {"train": "training", "val": "validation"}
ADE_FULL_NUM_CLASSES = 847
ADE_FULL_CLASSES_FILE = "ade20k_full_classes.txt"


def ade20k_categories() -> list[dict]:
    """150 `{"id", "name", "isthing"}` in semantic-id order (shipped `vocab/ade20k_150.json`)."""
    return read_vocab_file("ade20k_150.json")["categories"]


def ade20k_panoptic_metadata() -> dict:
    categories = ade20k_categories()
    names = [c["name"] for c in categories]
    return {
        "thing_classes": names,
        "stuff_classes": names,
        "thing_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(categories) if c["isthing"]},
        "stuff_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(categories) if not c["isthing"]},
    }


def ade20k_instance_metadata() -> dict:
    things = [c for c in ade20k_categories() if c["isthing"]]
    return {
        "thing_classes": [c["name"] for c in things],
        "thing_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(things)},
    }


def _load_ade_full(name: str, image_root: str, gt_root: str, classes_file: str) -> list[dict]:
    set_class_metadata(name, {"stuff_classes": read_class_list(name, classes_file, ADE_FULL_NUM_CLASSES)})
    return load_sem_seg_folder(name, image_root, gt_root, gt_ext="tif")


def register_ade20k(root: str) -> None:
    ade = os.path.join(root, "ADEChallengeData2016")
    full = os.path.join(root, "ADE20K_2021_17_01")
    panoptic_meta, instance_meta = ade20k_panoptic_metadata(), ade20k_instance_metadata()
    for split, dirname in ADE_SPLITS.items():
        image_root = os.path.join(ade, "images", dirname)
        sem_seg_root = os.path.join(ade, "annotations_detectron2", dirname)
        instance_json = os.path.join(ade, f"ade20k_instance_{split}.json")
        panoptic = {
            "json_file": os.path.join(ade, f"ade20k_panoptic_{split}.json"),
            "image_root": image_root,
            "panoptic_root": os.path.join(ade, f"ade20k_panoptic_{split}"),
            "sem_seg_root": sem_seg_root,
        }
        name = f"ade20k_panoptic_{split}"
        register(
            name,
            lambda n=name, p=panoptic: load_coco_panoptic(n, **p),
            tasks=("panoptic", "instance", "semantic"),
            evaluator_type="ade20k_panoptic_seg",
            expected_num_classes=150,
            ignore_label=255,
            label_divisor=1000,
            panoptic_json=panoptic["json_file"],
            panoptic_root=panoptic["panoptic_root"],
            image_root=image_root,
            sem_seg_root=sem_seg_root,
            json_file=instance_json,
            **panoptic_meta,
        )
        name = f"ade20k_instance_{split}"
        register(
            name,
            lambda n=name, j=instance_json, r=image_root: load_coco_instances(
                n, j, r, class_names=instance_meta["thing_classes"],
                id_map=instance_meta["thing_dataset_id_to_contiguous_id"]),
            tasks=("instance",),
            evaluator_type="coco",
            expected_num_classes=100,
            ignore_label=255,
            json_file=instance_json,
            image_root=image_root,
            **instance_meta,
        )
        name = f"ade20k_sem_seg_{split}"
        register_sem_seg_folder(name, image_root, sem_seg_root, panoptic_meta["stuff_classes"])
        name = f"ade20k_full_sem_seg_{split}"
        full_images = os.path.join(full, "images_detectron2", dirname)
        full_labels = os.path.join(full, "annotations_detectron2", dirname)
        classes_file = os.path.join(full, ADE_FULL_CLASSES_FILE)
        register(
            name,
            lambda n=name, r=full_images, g=full_labels, c=classes_file: _load_ade_full(n, r, g, c),
            tasks=("semantic",),
            evaluator_type="sem_seg",
            expected_num_classes=ADE_FULL_NUM_CLASSES,
            vocabulary_source="annotations",
            ignore_label=65535,
            image_root=full_images,
            sem_seg_root=full_labels,
            classes_file=classes_file,
        )
        register_class_resolver(
            name, lambda n=name, c=classes_file: {"stuff_classes": read_class_list(n, c, ADE_FULL_NUM_CLASSES)})
