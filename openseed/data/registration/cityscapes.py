"""Cityscapes fine (19 classes, 8 things): `cityscapes_fine_{panoptic,instance_seg,sem_seg}_{train,val}`.

Class names, ids and train ids come from Detectron2's shipped `CITYSCAPES_CATEGORIES`. Files (Detectron2 layout):
`cityscapes/leftImg8bit/<split>/<city>/*_leftImg8bit.png`, `cityscapes/gtFine/<split>/<city>/*_gtFine_{instanceIds,
labelTrainIds}.png` (`datasets/prepare_cityscapes.py` makes the train-id maps from `*_labelIds.png`), and for
panoptic `cityscapes/gtFine/cityscapes_panoptic_<split>{.json,/}` (cityscapesScripts' `createPanopticImgs`).

The instance loader reads `*_instanceIds.png` itself (value = label id × 1000 + instance; a bare thing label id
marks a crowd region), so no cityscapesScripts import is needed to build dataset dicts.
"""

from __future__ import annotations

import glob
import os

import numpy as np
import pycocotools.mask as mask_util
from detectron2.data.datasets.builtin_meta import CITYSCAPES_CATEGORIES
from detectron2.data.datasets.cityscapes_panoptic import load_cityscapes_panoptic
from detectron2.structures import BoxMode
from PIL import Image

from .common import register, require_files

CITYSCAPES_SPLITS = ("train", "val")


def cityscapes_metadata() -> dict:
    """Names in train-id order; thing / stuff maps from label ids to train ids."""
    ordered = sorted(CITYSCAPES_CATEGORIES, key=lambda c: c["trainId"])
    return {
        "names": [c["name"] for c in ordered],
        "thing_names": [c["name"] for c in ordered if c["isthing"]],
        "thing_map": {c["id"]: c["trainId"] for c in ordered if c["isthing"]},
        "stuff_map": {c["id"]: c["trainId"] for c in ordered if not c["isthing"]},
    }


def instances_from_instance_ids(instance_ids: np.ndarray, thing_label_ids: list[int]) -> list[dict]:
    """Annotations of one `*_instanceIds.png` (H×W int array); `category_id` = index in `thing_label_ids`."""
    annotations = []
    for value in np.unique(instance_ids):
        label_id = int(value) // 1000 if value >= 1000 else int(value)
        if label_id not in thing_label_ids:
            continue
        mask = instance_ids == value
        ys, xs = np.nonzero(mask)
        rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        annotations.append({
            "bbox": [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)],
            "bbox_mode": BoxMode.XYXY_ABS,
            "category_id": thing_label_ids.index(label_id),
            "iscrowd": int(value < 1000),
            "segmentation": rle,
        })
    return annotations


def load_cityscapes_instance_dicts(dataset_name: str, image_dir: str, gt_dir: str) -> list[dict]:
    require_files(dataset_name, image_dir, gt_dir)
    thing_label_ids = list(cityscapes_metadata()["thing_map"])
    records = []
    for image_file, city, stem in _city_images(image_dir):
        instance_file = os.path.join(gt_dir, city, stem + "gtFine_instanceIds.png")
        require_files(dataset_name, instance_file)
        instance_ids = np.asarray(Image.open(instance_file), dtype=np.int64)
        records.append({
            "file_name": image_file,
            "image_id": stem.rstrip("_"),
            "height": instance_ids.shape[0],
            "width": instance_ids.shape[1],
            "annotations": instances_from_instance_ids(instance_ids, thing_label_ids),
        })
    return records


def _city_images(image_dir: str) -> list[tuple[str, str, str]]:
    """`(image_file, city, stem)` with stem = `<city>_<seq>_<frame>_`."""
    files = sorted(glob.glob(os.path.join(image_dir, "*", "*_leftImg8bit.png")))
    return [(f, os.path.basename(os.path.dirname(f)), os.path.basename(f)[: -len("leftImg8bit.png")]) for f in files]


def load_cityscapes_semantic_dicts(dataset_name: str, image_dir: str, gt_dir: str) -> list[dict]:
    """`{"file_name", "sem_seg_file_name" (*_gtFine_labelTrainIds.png), "image_id"}` per image."""
    require_files(dataset_name, image_dir, gt_dir)
    records = [
        {"file_name": f, "sem_seg_file_name": os.path.join(gt_dir, city, stem + "gtFine_labelTrainIds.png"),
         "image_id": stem.rstrip("_")}
        for f, city, stem in _city_images(image_dir)
    ]
    missing = [r["sem_seg_file_name"] for r in records if not os.path.isfile(r["sem_seg_file_name"])]
    require_files(dataset_name, *missing[:5], hint="Run datasets/prepare_cityscapes.py to make *_labelTrainIds.png.")
    return records


def _load_panoptic(dataset_name: str, image_dir: str, gt_dir: str, gt_json: str, meta: dict) -> list[dict]:
    """Detectron2's loader (it also attaches the `*_labelTrainIds.png` semantic maps)."""
    require_files(dataset_name, image_dir, gt_dir, gt_json)
    semantic = [os.path.join(os.path.dirname(gt_dir), os.path.basename(image_dir), city, stem + "gtFine_labelTrainIds.png")
                for _, city, stem in _city_images(image_dir)[:1]]
    require_files(dataset_name, *semantic, hint="Run datasets/prepare_cityscapes.py to make *_labelTrainIds.png.")
    return load_cityscapes_panoptic(image_dir, gt_dir, gt_json, meta)


def register_cityscapes(root: str) -> None:
    meta = cityscapes_metadata()
    for split in CITYSCAPES_SPLITS:
        image_dir = os.path.join(root, "cityscapes", "leftImg8bit", split)
        gt_dir = os.path.join(root, "cityscapes", "gtFine", split)
        panoptic_dir = os.path.join(root, "cityscapes", "gtFine", f"cityscapes_panoptic_{split}")
        panoptic_json = panoptic_dir + ".json"
        id_maps = {"thing_dataset_id_to_contiguous_id": meta["thing_map"],
                   "stuff_dataset_id_to_contiguous_id": meta["stuff_map"]}
        name = f"cityscapes_fine_panoptic_{split}"
        register(
            name,
            lambda n=name, i=image_dir, p=panoptic_dir, j=panoptic_json, m=id_maps: _load_panoptic(n, i, p, j, m),
            tasks=("panoptic", "semantic"),
            evaluator_type="cityscapes_panoptic_seg",
            expected_num_classes=19,
            ignore_label=255,
            label_divisor=1000,
            image_root=image_dir,
            gt_dir=gt_dir,
            panoptic_root=panoptic_dir,
            panoptic_json=panoptic_json,
            thing_classes=meta["names"],
            stuff_classes=meta["names"],
            **id_maps,
        )
        name = f"cityscapes_fine_instance_seg_{split}"
        register(
            name,
            lambda n=name, i=image_dir, g=gt_dir: load_cityscapes_instance_dicts(n, i, g),
            tasks=("instance",),
            evaluator_type="cityscapes_instance",
            expected_num_classes=8,
            ignore_label=255,
            image_dir=image_dir,
            gt_dir=gt_dir,
            thing_classes=meta["thing_names"],
            thing_dataset_id_to_contiguous_id={k: i for i, k in enumerate(meta["thing_map"])},
        )
        name = f"cityscapes_fine_sem_seg_{split}"
        register(
            name,
            lambda n=name, i=image_dir, g=gt_dir: load_cityscapes_semantic_dicts(n, i, g),
            tasks=("semantic",),
            evaluator_type="cityscapes_sem_seg",
            expected_num_classes=19,
            ignore_label=255,
            image_dir=image_dir,
            gt_dir=gt_dir,
            stuff_classes=meta["names"],
        )
