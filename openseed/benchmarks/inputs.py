"""Deterministic inputs of the model benchmarks: the model, vocabularies by name, images and training samples.

`build_benchmark_model` seeds the global RNG before building, so a randomly initialised model is the same in every
process (and its text-embedding disk-cache key with it); `--weights` loads a checkpoint strictly instead.

Vocabularies (`benchmark_vocabulary(spec)`):
    "coco143"  the 133 COCO panoptic classes + 8 things + 2 stuff (the 143 names of the official measurements)
    "coco"     the 133 COCO panoptic classes (80 things, 53 stuff)
    "coco80"   the 80 COCO thing classes
    "o365"     the 365 Objects365 v2 classes (all things)
    "lvis"     the 1,203 LVIS v1 classes (all things)
    an integer N: the first N LVIS classes (all things)
"""

from __future__ import annotations

import numpy as np
import torch
from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Boxes, Instances

from openseed.checkpoint import initialise_text_encoder, load_model_file
from openseed.config import setup_cfg
from openseed.data.registration.lvis import lvis_v1_class_names
from openseed.data.registration.objects365 import objects365_classes
from openseed.vocabulary import Vocabulary

EXTRA_THINGS = ("traffic cone", "helmet", "lantern", "guitar", "drone", "tractor", "camel", "lion")
EXTRA_STUFF = ("waterfall", "glacier")
VOCABULARY_SPECS = ("coco143", "coco", "coco80", "o365", "lvis")


def build_benchmark_model(config_file: str, opts: list[str], weights: str = "", seed: int = 0):
    """(frozen cfg, model on MODEL.DEVICE in eval mode): `config_file` + `KEY VALUE` `opts`, seeded random init or
    `weights` (a checkpoint of this model, loaded strictly); `MODEL.TEXT.INIT_WEIGHTS` first, when set."""
    cfg = setup_cfg(config_file, list(opts))
    torch.manual_seed(seed)
    model = build_model(cfg)
    initialise_text_encoder(model, cfg)
    if weights:
        load_model_file(model, weights)
    return cfg, model.eval()


def benchmark_vocabulary(spec: str) -> Vocabulary:
    """The vocabulary named by `spec` (see the module docstring)."""
    things = [c["name"] for c in COCO_CATEGORIES if c["isthing"]]
    stuff = [c["name"] for c in COCO_CATEGORIES if not c["isthing"]]
    if spec == "coco143":
        return Vocabulary.from_names(things + list(EXTRA_THINGS), stuff + list(EXTRA_STUFF))
    if spec == "coco":
        return Vocabulary.from_names(things, stuff)
    if spec == "coco80":
        return Vocabulary.from_names(things)
    if spec == "o365":
        return Vocabulary.from_names(objects365_classes("v2"))
    lvis = lvis_v1_class_names()
    if spec == "lvis":
        return Vocabulary.from_names(lvis)
    if spec.isdigit() and 0 < int(spec) <= len(lvis):
        return Vocabulary.from_names(lvis[: int(spec)])
    raise ValueError(f"vocabulary {spec!r}: expected one of {VOCABULARY_SPECS} or a count 1..{len(lvis)}")


def _random_boxes(rng: np.random.Generator, count: int, height: int, width: int) -> np.ndarray:
    """count×4 xyxy integer boxes, each at least 1/16 of a side, inside the image."""
    sizes = rng.uniform(0.0625, 0.5, size=(count, 2)) * [width, height]
    corners = rng.uniform(0.0, 1.0, size=(count, 2)) * ([width, height] - sizes)
    return np.round(np.concatenate([corners, corners + sizes], axis=1)).astype(np.int64)


def synthetic_image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """uint8 3×H×W: a colour gradient with filled rectangles (deterministic in `seed`)."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width]
    image = np.stack([rows * 255 // max(height - 1, 1), cols * 255 // max(width - 1, 1),
                      (rows + cols) * 255 // max(height + width - 2, 1)]).astype(np.uint8)
    for x0, y0, x1, y1 in _random_boxes(rng, 24, height, width):
        image[:, y0:y1, x0:x1] = rng.integers(0, 256, size=(3, 1, 1), dtype=np.uint8)
    return torch.from_numpy(image)


def synthetic_training_sample(size: int, num_classes: int, task: str, num_instances: int, seed: int = 0) -> dict:
    """A training-mapper-like dict on a size×size canvas: `image`, `instances` (gt_classes, gt_boxes and, for task
    "seg", rectangular gt_masks), `height`, `width`, `file_name`, `image_id`."""
    if task not in ("seg", "det"):
        raise ValueError(f"task must be 'seg' or 'det', got {task!r}")
    rng = np.random.default_rng(seed)
    boxes = _random_boxes(rng, num_instances, size, size)
    instances = Instances((size, size))
    instances.gt_classes = torch.as_tensor(rng.integers(0, num_classes, size=num_instances), dtype=torch.int64)
    instances.gt_boxes = Boxes(torch.as_tensor(boxes, dtype=torch.float32))
    if task == "seg":
        masks = torch.zeros(num_instances, size, size, dtype=torch.bool)
        for index, (x0, y0, x1, y1) in enumerate(boxes):
            masks[index, y0:y1, x0:x1] = True
        instances.gt_masks = BitMasks(masks)
    return {"image": synthetic_image(size, size, seed), "instances": instances, "height": size, "width": size,
            "file_name": f"synthetic_{task}_{seed}.png", "image_id": seed}
