"""BDD100K, 10k-image segmentation subset: semantic (19 Cityscapes classes) and panoptic (40 classes, 10 things).

- `bdd10k_{train,val}_sem_seg`: `bdd100k/images/10k/<split>/*.jpg` + `bdd100k/labels/sem_seg/masks/<split>/*.png`
  (train ids 0..18, 255 = ignore).
- `bdd10k_40_panoptic_{train,val}`: COCO-panoptic json `bdd100k/labels/pan_seg/meta/coco_<split>.json` and PNGs
  `bdd100k/labels/pan_seg/coco_pano/<split>/` (BDD100K's `to_coco` conversion; category ids 1..40), plus semantic
  maps `bdd100k/labels/pan_seg/sem_seg_40/<split>/` made by `datasets/prepare_panoptic_semantic.py`.
Class names: the 19 Cityscapes names (Detectron2) and the hand-written `vocab/bdd100k_panoptic.json`.
"""

from __future__ import annotations

import os

from .cityscapes import cityscapes_metadata
from .coco import load_coco_panoptic
from .common import read_vocab_file, register, register_sem_seg_folder

BDD_SPLITS = ("train", "val")


def bdd_panoptic_metadata() -> dict:
    categories = read_vocab_file("bdd100k_panoptic.json")["categories"]
    names = [c["name"] for c in categories]
    return {
        "thing_classes": names,
        "stuff_classes": names,
        "thing_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(categories) if c["isthing"]},
        "stuff_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(categories) if not c["isthing"]},
    }


def register_bdd(root: str) -> None:
    bdd = os.path.join(root, "bdd100k")
    panoptic_meta = bdd_panoptic_metadata()
    for split in BDD_SPLITS:
        image_root = os.path.join(bdd, "images", "10k", split)
        sem_root = os.path.join(bdd, "labels", "sem_seg", "masks", split)
        name = f"bdd10k_{split}_sem_seg"
        register_sem_seg_folder(name, image_root, sem_root, cityscapes_metadata()["names"])
        panoptic = {
            "json_file": os.path.join(bdd, "labels", "pan_seg", "meta", f"coco_{split}.json"),
            "image_root": image_root,
            "panoptic_root": os.path.join(bdd, "labels", "pan_seg", "coco_pano", split),
            "sem_seg_root": os.path.join(bdd, "labels", "pan_seg", "sem_seg_40", split),
        }
        name = f"bdd10k_40_panoptic_{split}"
        register(
            name,
            lambda n=name, p=panoptic: load_coco_panoptic(n, **p),
            tasks=("panoptic", "semantic"),
            evaluator_type="bdd_panoptic_pano",
            expected_num_classes=40,
            ignore_label=255,
            label_divisor=1000,
            panoptic_json=panoptic["json_file"],
            panoptic_root=panoptic["panoptic_root"],
            image_root=image_root,
            sem_seg_root=panoptic["sem_seg_root"],
            **panoptic_meta,
        )
