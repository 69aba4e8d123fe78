"""SUN RGB-D semantic segmentation, 37 NYU classes: `sunrgbd_37_val_seg` (the official test split).

Files under `sun_rgbd/`: images `image/test/*.jpg`, labels `label37/test/*.png` (0 = unannotated, k = k-th class),
converted by `datasets/prepare_offset_labels.py sunrgbd` to `label37_detectron2/test/` (class k-1, 255 = ignore),
which is read. Class names: the first 37 NYU-40 classes (`vocab/nyu40.json`).
"""

from __future__ import annotations

import os

from .common import load_sem_seg_folder, register
from .scannet import nyu40_names

SUNRGBD_SPLITS = {"sunrgbd_37_val_seg": "test"}


def register_sunrgbd(root: str) -> None:
    base = os.path.join(root, "sun_rgbd")
    for name, split in SUNRGBD_SPLITS.items():
        image_root = os.path.join(base, "image", split)
        label_root = os.path.join(base, "label37_detectron2", split)
        register(
            name,
            lambda n=name, i=image_root, g=label_root: load_sem_seg_folder(n, i, g),
            tasks=("semantic",),
            evaluator_type="sem_seg",
            expected_num_classes=37,
            ignore_label=255,
            image_root=image_root,
            sem_seg_root=label_root,
            stuff_classes=nyu40_names()[:37],
        )
