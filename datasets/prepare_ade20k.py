"""ADE20K (SceneParsing 150) -> Detectron2 semantic maps, COCO-panoptic json/PNGs and a COCO instance json.

Input (under `$DETECTRON2_DATASETS/ADEChallengeData2016`, the official release plus the instance annotations of
the SceneParsing instance track):
    images/{training,validation}/*.jpg
    annotations/{training,validation}/*.png            semantic, 0 = other, k = k-th of the 150 classes
    annotations_instance/{training,validation}/*.png   RGB; the G channel numbers the object instances
Output (what `openseed.data.registration.ade20k` reads):
    annotations_detectron2/<dir>/*.png                 class k-1, 255 = ignore
    ade20k_panoptic_{train,val}.json + ade20k_panoptic_{train,val}/*.png   category ids 0..149
    ade20k_instance_{train,val}.json                   100 thing classes, category ids 0..149, RLE masks
Stuff segments come from the semantic map; every instance of the G channel whose most frequent semantic label is a
thing class becomes a thing segment / instance of that class (instances over stuff or unlabeled pixels only are
dropped and counted). Image ids are the file stems (`ADE_val_00000001`), shared by the panoptic and instance jsons.

    python datasets/prepare_ade20k.py [--root datasets/ADEChallengeData2016] [--splits val] [--workers 8]
"""

from __future__ import annotations

import argparse
import json
import os
from functools import partial
from multiprocessing import Pool

import numpy as np
import pycocotools.mask as mask_util
from PIL import Image

from openseed.data.registration.ade20k import ade20k_categories

SPLITS = {"train": "training", "val": "validation"}
IGNORE = 255


def semantic_to_detectron2(semantic: np.ndarray) -> np.ndarray:
    """H×W uint8 labels 0..150 (0 = other) -> 0..149 with 255 for "other"."""
    return (semantic.astype(np.int32) - 1).astype(np.uint8)


def id_to_rgb(segment_ids: np.ndarray) -> np.ndarray:
    """H×W int ids -> H×W×3 uint8 (COCO panoptic: id = R + 256·G + 256²·B)."""
    return np.stack([segment_ids % 256, segment_ids // 256 % 256, segment_ids // 65536 % 256], axis=-1).astype(np.uint8)


def _box(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]


def image_segments(semantic: np.ndarray, instance_ids: np.ndarray, is_thing: list[bool]):
    """One image's panoptic segmentation.

    Args:
        semantic: H×W uint8, 0..149 and 255 (Detectron2 semantic map).
        instance_ids: H×W int, 0 = no instance, otherwise the instance number.
        is_thing: 150 thing flags.
    Returns:
        `(segment_ids H×W int32, segments_info list, dropped_instances int)`; segment ids start at 1. Thing
        segments (the instances, class = most frequent semantic label under the mask) come first and keep their
        pixels; stuff segments take the remaining pixels of each stuff class.
    """
    segment_ids = np.zeros(semantic.shape, dtype=np.int32)
    segments, dropped = [], 0

    def add(mask: np.ndarray, category: int) -> None:
        segments.append({"id": len(segments) + 1, "category_id": category, "iscrowd": 0,
                         "area": int(mask.sum()), "bbox": _box(mask)})
        segment_ids[mask] = len(segments)

    for instance in np.unique(instance_ids):
        if instance == 0:
            continue
        mask = instance_ids == instance
        labels = semantic[mask]
        labels = labels[labels != IGNORE]
        category = int(np.bincount(labels).argmax()) if labels.size else None
        if category is None or not is_thing[category]:
            dropped += 1
            continue
        add(mask, category)
    for category in np.unique(semantic):
        if category == IGNORE or is_thing[category]:
            continue
        mask = (semantic == category) & (segment_ids == 0)
        if mask.any():
            add(mask, int(category))
    return segment_ids, segments, dropped


def _convert_image(stem: str, root: str, dirname: str, split: str, is_thing: list[bool]):
    image = Image.open(os.path.join(root, "images", dirname, stem + ".jpg"))
    semantic = semantic_to_detectron2(np.asarray(Image.open(os.path.join(root, "annotations", dirname, stem + ".png"))))
    instance_png = np.asarray(Image.open(os.path.join(root, "annotations_instance", dirname, stem + ".png")))
    segment_ids, segments, dropped = image_segments(semantic, instance_png[..., 1].astype(np.int32), is_thing)
    Image.fromarray(semantic).save(os.path.join(root, "annotations_detectron2", dirname, stem + ".png"))
    Image.fromarray(id_to_rgb(segment_ids)).save(os.path.join(root, f"ade20k_panoptic_{split}", stem + ".png"))
    instances = []
    for segment in segments:
        if is_thing[segment["category_id"]]:
            rle = mask_util.encode(np.asfortranarray((segment_ids == segment["id"]).astype(np.uint8)))
            rle["counts"] = rle["counts"].decode("ascii")
            instances.append({"image_id": stem, "category_id": segment["category_id"], "iscrowd": 0,
                              "bbox": segment["bbox"], "area": segment["area"], "segmentation": rle})
    image_entry = {"id": stem, "file_name": stem + ".jpg", "height": image.height, "width": image.width}
    panoptic_entry = {"image_id": stem, "file_name": stem + ".png", "segments_info": segments}
    return image_entry, panoptic_entry, instances, dropped


def convert_split(root: str, split: str, workers: int = 1) -> dict:
    """Convert one split; returns counts (images, segments, instances, dropped instances)."""
    dirname = SPLITS[split]
    categories = ade20k_categories()
    is_thing = [c["isthing"] for c in categories]
    for folder in (os.path.join(root, "annotations_detectron2", dirname), os.path.join(root, f"ade20k_panoptic_{split}")):
        os.makedirs(folder, exist_ok=True)
    stems = sorted(os.path.splitext(f)[0] for f in os.listdir(os.path.join(root, "images", dirname))
                   if f.endswith(".jpg"))
    work = partial(_convert_image, root=root, dirname=dirname, split=split, is_thing=is_thing)
    if workers > 1:
        with Pool(workers) as pool:
            results = pool.map(work, stems, chunksize=8)
    else:
        results = [work(stem) for stem in stems]
    images = [r[0] for r in results]
    instances = [dict(instance, id=i + 1) for i, instance in enumerate(x for r in results for x in r[2])]
    panoptic_categories = [{"id": c["id"], "name": c["name"], "isthing": int(c["isthing"])} for c in categories]
    with open(os.path.join(root, f"ade20k_panoptic_{split}.json"), "w", encoding="utf-8") as f:
        json.dump({"images": images, "annotations": [r[1] for r in results], "categories": panoptic_categories}, f)
    thing_categories = [{"id": c["id"], "name": c["name"]} for c in categories if c["isthing"]]
    with open(os.path.join(root, f"ade20k_instance_{split}.json"), "w", encoding="utf-8") as f:
        json.dump({"images": images, "annotations": instances, "categories": thing_categories}, f)
    return {"images": len(images), "segments": sum(len(r[1]["segments_info"]) for r in results),
            "instances": len(instances), "dropped_instances": sum(r[3] for r in results)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_root = os.path.join(os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets")),
                                "ADEChallengeData2016")
    parser.add_argument("--root", default=default_root)
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=list(SPLITS))
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    for split in args.splits:
        print(split, convert_split(args.root, split, args.workers))


if __name__ == "__main__":
    main()
