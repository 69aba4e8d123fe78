"""Predictions as one COCO-format JSON (tools/demo.py).

The file is a COCO dataset dict with scores, readable by `pycocotools.coco.COCO`:

    {"images": [{"id", "file_name", "height", "width"}],
     "categories": [{"id": k + 1, "name", "isthing"}],          # k = index in the vocabulary
     "annotations": [{"id", "image_id", "category_id", "bbox": [x, y, w, h], "area", "iscrowd": 0,
                      "segmentation": RLE {"size", "counts"} (absent for detection), "score" (absent for panoptic
                      and semantic, which give no per-segment score)}]}

Per task one annotation is: an instance (instance, detection), a panoptic segment (panoptic), the region of one
class (semantic, per-pixel argmax).
"""

from __future__ import annotations

import json

import numpy as np
import pycocotools.mask as mask_util

from openseed.checkpoint.io import atomic_write
from openseed.vocabulary import Vocabulary


def encode_mask(mask: np.ndarray) -> dict:
    """COCO compressed RLE of a bool H×W mask, with `counts` as a string (JSON-ready)."""
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def mask_box(mask: np.ndarray) -> list[float]:
    """Tight [x, y, w, h] box of a bool mask (zeros for an empty mask)."""
    return [float(v) for v in mask_util.toBbox(mask_util.encode(np.asfortranarray(mask.astype(np.uint8))))]


def _segment(mask: np.ndarray, category: int) -> dict:
    return {"category_id": category + 1, "segmentation": encode_mask(mask), "bbox": mask_box(mask),
            "area": int(mask.sum()), "iscrowd": 0}


def prediction_annotations(outputs: dict, task: str) -> list[dict]:
    """Annotations (without ids) of one image's model outputs for `task`."""
    if task == "panoptic":
        ids, segments_info = outputs["panoptic_seg"]
        ids = ids.to("cpu").numpy()
        return [_segment(ids == s["id"], int(s["category_id"])) for s in segments_info]
    if task == "semantic":
        labels = outputs["sem_seg"].argmax(dim=0).to("cpu").numpy()
        return [_segment(labels == k, int(k)) for k in np.unique(labels)]
    instances = outputs["instances"].to("cpu")
    boxes = instances.pred_boxes.tensor.numpy()
    annotations = []
    for index in range(len(instances)):
        x0, y0, x1, y1 = (float(v) for v in boxes[index])
        annotation = {"category_id": int(instances.pred_classes[index]) + 1, "bbox": [x0, y0, x1 - x0, y1 - y0],
                      "area": (x1 - x0) * (y1 - y0), "iscrowd": 0, "score": float(instances.scores[index])}
        if instances.has("pred_masks"):
            mask = instances.pred_masks[index].numpy()
            annotation.update(segmentation=encode_mask(mask), area=int(mask.sum()))
        annotations.append(annotation)
    return annotations


class CocoPredictionWriter:
    """Collects the predictions of several images and writes them as one COCO-format JSON file."""

    def __init__(self, vocabulary: Vocabulary, task: str):
        self.vocabulary = vocabulary
        self.task = task
        self.images: list[dict] = []
        self.annotations: list[dict] = []

    def add(self, file_name: str, height: int, width: int, outputs: dict) -> int:
        """Add one image's outputs; returns its image id (1, 2, ...)."""
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "file_name": file_name, "height": int(height), "width": int(width)})
        for annotation in prediction_annotations(outputs, self.task):
            annotation.update(id=len(self.annotations) + 1, image_id=image_id)
            self.annotations.append(annotation)
        return image_id

    def categories(self) -> list[dict]:
        return [{"id": k + 1, "name": name, "isthing": int(thing)}
                for k, (name, thing) in enumerate(zip(self.vocabulary.names, self.vocabulary.is_thing))]

    def as_dict(self) -> dict:
        return {"info": {"description": f"openseed {self.task} predictions"}, "images": self.images,
                "annotations": self.annotations, "categories": self.categories()}

    def write(self, path: str) -> None:
        """Write the JSON atomically."""
        content = json.dumps(self.as_dict()).encode("utf-8")
        atomic_write(path, lambda handle: handle.write(content))
