"""SUN RGB-D semantic segmentation, 37 NYU classes: `sunrgbd_37_val_seg` (the official test split).

Files under `sun_rgbd/`: images `image/test/*.jpg`, labels `label37/test/*.png` (0 = unannotated, k = k-th class),
converted by `datasets/prepare_offset_labels.py sunrgbd` to `label37_detectron2/test/` (class k-1, 255 = ignore),
which is read. Class names: the first 37 NYU-40 classes (`vocab/nyu40.json`).
"""

from __future__ import annotations

import os

from .common import register_sem_seg_folder
from .scannet import nyu40_names

SUNRGBD_SPLITS = {"sunrgbd_37_val_seg": "test"}


def register_sunrgbd(root: str) -> None:
    base = os.path.join(root, "sun_rgbd")
    for name, split in SUNRGBD_SPLITS.items():
        image_root = os.path.join(base, "image", split)
        label_root = os.path.join(base, "label37_detectron2", split)
        register_sem_seg_folder(name, image_root, label_root, nyu40_names()[:37])
