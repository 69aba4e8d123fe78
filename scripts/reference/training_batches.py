"""Synthetic training batches for the training-step fidelity fixtures (reference harness only; no project imports).

Both functions return plain tensors so the fixture stores the exact batch and the tests rebuild Detectron2 inputs
from it without this file.

- `segmentation_batch`: images with stuff bands (top and bottom) and 2–4 thing rectangles/ellipses on top of them;
  every pixel belongs to at most one segment; boxes are the tight xyxy extents of the masks (x1 = last column + 1,
  as Detectron2's `BitMasks.get_bounding_boxes`).
- `detection_batch`: box-only images (Objects365-like), 2–5 boxes each.
"""

from __future__ import annotations

import numpy as np
import torch


def synthetic_image(height: int, width: int, rng: np.random.Generator) -> torch.Tensor:
    """uint8 3×H×W: a colour gradient plus 16 filled rectangles of random colours."""
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([y * 255 // max(height - 1, 1), x * 255 // max(width - 1, 1),
                      (x + y) * 255 // max(height + width - 2, 1)]).astype(np.uint8)
    for _ in range(16):
        h, w = int(rng.integers(height // 16, height // 2)), int(rng.integers(width // 16, width // 2))
        y0, x0 = int(rng.integers(0, height - h)), int(rng.integers(0, width - w))
        image[:, y0:y0 + h, x0:x0 + w] = rng.integers(0, 256, size=(3, 1, 1), dtype=np.uint8)
    return torch.from_numpy(image)


def _thing_mask(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    h, w = int(rng.integers(height // 6, height // 2)), int(rng.integers(width // 6, width // 2))
    y0, x0 = int(rng.integers(height // 8, height - h)), int(rng.integers(0, width - w))
    mask = np.zeros((height, width), dtype=bool)
    if rng.random() < 0.5:
        mask[y0:y0 + h, x0:x0 + w] = True
    else:
        yy, xx = np.mgrid[0:height, 0:width]
        mask = ((yy - (y0 + h / 2)) / (h / 2)) ** 2 + ((xx - (x0 + w / 2)) / (w / 2)) ** 2 <= 1.0
    return mask


def _boxes_of(masks: np.ndarray) -> np.ndarray:
    boxes = []
    for mask in masks:
        ys, xs = np.nonzero(mask)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4)


def segmentation_batch(num_images: int, size: tuple[int, int], is_thing: list[bool], seed: int) -> list[dict]:
    """Per image {"image": uint8 3×H×W, "classes": int64[N], "boxes": float32[N, 4] xyxy, "masks": bool[N, H, W]}."""
    rng = np.random.default_rng(seed)
    things = [i for i, t in enumerate(is_thing) if t]
    stuff = [i for i, t in enumerate(is_thing) if not t]
    height, width = size
    batch = []
    for _ in range(num_images):
        occupied = np.zeros((height, width), dtype=bool)
        masks, classes = [], []
        for _ in range(int(rng.integers(2, 5))):
            mask = _thing_mask(height, width, rng) & ~occupied
            if mask.sum() < 64:
                continue
            masks.append(mask)
            classes.append(int(rng.choice(things)))
            occupied |= mask
        split = int(rng.integers(height // 4, height // 2))
        for band in (slice(0, split), slice(split + height // 4, height)):
            mask = np.zeros((height, width), dtype=bool)
            mask[band] = True
            mask &= ~occupied
            if mask.sum() < 64:
                continue
            masks.append(mask)
            classes.append(int(rng.choice(stuff)))
            occupied |= mask
        masks = np.stack(masks)
        batch.append({"image": synthetic_image(height, width, rng), "classes": torch.tensor(classes),
                      "boxes": torch.from_numpy(_boxes_of(masks)), "masks": torch.from_numpy(masks)})
    return batch


def detection_batch(num_images: int, size: tuple[int, int], num_classes: int, seed: int) -> list[dict]:
    """Per image {"image": uint8 3×H×W, "classes": int64[N], "boxes": float32[N, 4] xyxy pixels}."""
    rng = np.random.default_rng(seed)
    height, width = size
    batch = []
    for _ in range(num_images):
        boxes = []
        for _ in range(int(rng.integers(2, 6))):
            w, h = float(rng.uniform(width / 10, width / 2)), float(rng.uniform(height / 10, height / 2))
            x0, y0 = float(rng.uniform(0, width - w)), float(rng.uniform(0, height - h))
            boxes.append([round(x0, 2), round(y0, 2), round(x0 + w, 2), round(y0 + h, 2)])
        classes = rng.choice(num_classes, size=len(boxes), replace=False)
        batch.append({"image": synthetic_image(height, width, rng), "classes": torch.from_numpy(classes).long(),
                      "boxes": torch.tensor(boxes, dtype=torch.float32)})
    return batch
