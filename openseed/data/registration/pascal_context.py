"""Pascal Context semantic segmentation, 59 and 459 classes: `pascal_context_{59,459}_sem_seg_{train,val}`.

Files under `pascal_ctx_d2/` (the Detectron2 layout used by Mask2Former-style conversions): images
`images/{training,validation}/*.jpg`, labels `annotations_ctx59/<dir>/*.png` (0..58, 255 = ignore) and
`annotations_ctx459/<dir>/*.tif` (0..458, 65535 = ignore). The 59 names are shipped (mmsegmentation's list,
`vocab/pascal_context_59.json`); the 459 names are read from `pascal_ctx_d2/pascal_context_459_classes.txt`, one
per line in label order (no licensed offline source ships them; the dataset's own `labels.txt` has them).
"""

from __future__ import annotations

import os

from .common import (
    load_sem_seg_folder,
    read_class_list,
    read_vocab_file,
    register,
    register_class_resolver,
    register_sem_seg_folder,
    set_class_metadata,
)

PASCAL_CONTEXT_SPLITS = {"train": "training", "val": "validation"}
PC459_CLASSES_FILE = "pascal_context_459_classes.txt"


def _load_pc459(name: str, image_root: str, gt_root: str, classes_file: str) -> list[dict]:
    set_class_metadata(name, {"stuff_classes": read_class_list(name, classes_file, 459)})
    return load_sem_seg_folder(name, image_root, gt_root, gt_ext="tif")


def register_pascal_context(root: str) -> None:
    base = os.path.join(root, "pascal_ctx_d2")
    classes_59 = list(read_vocab_file("pascal_context_59.json")["classes"])
    classes_file = os.path.join(base, PC459_CLASSES_FILE)
    for split, dirname in PASCAL_CONTEXT_SPLITS.items():
        image_root = os.path.join(base, "images", dirname)
        gt_59 = os.path.join(base, "annotations_ctx59", dirname)
        name = f"pascal_context_59_sem_seg_{split}"
        register_sem_seg_folder(name, image_root, gt_59, classes_59)
        gt_459 = os.path.join(base, "annotations_ctx459", dirname)
        name = f"pascal_context_459_sem_seg_{split}"
        register(
            name,
            lambda n=name, i=image_root, g=gt_459: _load_pc459(n, i, g, classes_file),
            tasks=("semantic",),
            evaluator_type="sem_seg",
            expected_num_classes=459,
            vocabulary_source="annotations",
            ignore_label=65535,
            image_root=image_root,
            sem_seg_root=gt_459,
            classes_file=classes_file,
        )
        register_class_resolver(name, lambda n=name: {"stuff_classes": read_class_list(n, classes_file, 459)})
