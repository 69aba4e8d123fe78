"""Hand-made training samples for the mapper-fidelity harness (`mappers_fixture.py`); numpy + PIL only.

COCO-panoptic sample: an H×W RGB image (H, W drawn in [0.6, 1.6]·size) of 2–3 stuff bands and 3–6 things
(rectangles and ellipses, later ones occluding earlier ones) plus two small things in the right-hand corners (so
that crops and flips cut them or remove them), one thing marked crowd; segment ids are random 24-bit values (all three
RGB bytes used); every listed segment keeps at least one pixel. Objects365 sample: an image with 4–8 boxes (XYWH with
fractional coordinates), two small ones in the right-hand corners, one reaching past the right or bottom edge, one
crowd, and one degenerate box of each kind of `DEGENERATE_KINDS` (zero width, zero height, negative width, NaN,
entirely outside the image to the right / below / above) at random places in the list; contiguous class ids in
[0, 365).
Textures are smooth (gradients and sines), so the PNGs stay small and bilinear resizing has real work to do.
"""

from __future__ import annotations

import numpy as np

NUM_THINGS, NUM_STUFF, NUM_O365 = 10, 5, 365
PAD_ID = 255 + 256 * 255 + 65536 * 255  # rgb2id of the segmentation pad value (255, 255, 255)
DEGENERATE_KINDS = ("zero_width", "zero_height", "negative_width", "not_finite", "outside_right", "outside_below",
                    "outside_above")


def image_size(rng: np.random.Generator, size: int) -> tuple[int, int]:
    low, high = int(0.6 * size), int(1.6 * size)
    return int(rng.integers(low, high + 1)), int(rng.integers(low, high + 1))


def textured(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth float H×W×3 texture in [0, 255]: a random colour, a linear gradient and a sine pattern."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    base = rng.uniform(30, 225, size=3)
    slope = rng.uniform(-0.6, 0.6, size=(2, 3))
    period, phase = rng.uniform(5, 17, size=3), rng.uniform(0, 2 * np.pi, size=3)
    pattern = 25 * np.sin((x[..., None] + 0.5 * y[..., None]) / period + phase)
    return np.clip(base + slope[0] * x[..., None] + slope[1] * y[..., None] + pattern, 0, 255)


def shape_mask(rng: np.random.Generator, h: int, w: int, box: tuple[float, float, float, float]) -> np.ndarray:
    """A rectangle or an ellipse filling the xyxy `box`."""
    x0, y0, x1, y1 = box
    y, x = np.mgrid[0:h, 0:w] + 0.5
    if rng.random() < 0.5:
        return (x >= x0) & (x < x1) & (y >= y0) & (y < y1)
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, max((x1 - x0) / 2, 1.0), max((y1 - y0) / 2, 1.0)
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1.0


def random_box(rng: np.random.Generator, h: int, w: int, low: float, high: float) -> list[float]:
    """xyxy box of side fraction in [low, high] of the image, anywhere inside it."""
    bw, bh = rng.uniform(low, high) * w, rng.uniform(low, high) * h
    x0, y0 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
    return [x0, y0, x0 + bw, y0 + bh]


def corner_boxes(rng: np.random.Generator, h: int, w: int) -> list[list[float]]:
    """Two small xyxy boxes touching the top-right and bottom-right corners."""
    boxes = []
    for top in (True, False):
        bw, bh = rng.uniform(0.05, 0.12) * w, rng.uniform(0.05, 0.12) * h
        y0 = 0.0 if top else h - bh
        boxes.append([w - bw, y0, float(w), y0 + bh])
    return boxes


def panoptic_sample(rng: np.random.Generator, size: int) -> dict:
    """{"image": uint8 H×W×3, "pan": uint8 H×W×3 (panopticapi id encoding), "segments_info": [...]}."""
    h, w = image_size(rng, size)
    ids = np.zeros((h, w), dtype=np.int64)
    image = np.zeros((h, w, 3))
    segment_ids = rng.choice(np.arange(1, PAD_ID), size=16, replace=False)
    segments = []
    rows = np.sort(rng.choice(np.arange(1, h), size=int(rng.integers(1, 3)), replace=False))
    for top, bottom in zip(np.concatenate([[0], rows]), np.concatenate([rows, [h]])):
        region = np.zeros((h, w), dtype=bool)
        region[top:bottom] = True
        segments.append({"mask": region, "category_id": int(rng.integers(NUM_THINGS, NUM_THINGS + NUM_STUFF)),
                         "isthing": 0})
    thing_boxes = [random_box(rng, h, w, 0.1, 0.45) for _ in range(int(rng.integers(3, 7)))] + corner_boxes(rng, h, w)
    crowd = int(rng.integers(len(thing_boxes)))
    for k, box in enumerate(thing_boxes):
        segments.append({"mask": shape_mask(rng, h, w, box), "category_id": int(rng.integers(NUM_THINGS)),
                         "isthing": 1, "iscrowd": int(k == crowd)})
    for segment, segment_id in zip(segments, segment_ids):
        ids[segment["mask"]] = segment_id
        image[segment["mask"]] = textured(rng, h, w)[segment["mask"]]
    segments_info = []
    for segment, segment_id in zip(segments, segment_ids):
        area = int((ids == segment_id).sum())
        if area:
            segments_info.append({"id": int(segment_id), "category_id": segment["category_id"],
                                  "iscrowd": segment.get("iscrowd", 0), "isthing": segment["isthing"], "area": area})
    pan = np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)
    return {"image": image.round().astype(np.uint8), "pan": pan, "segments_info": segments_info}


def degenerate_box(rng: np.random.Generator, h: int, w: int, kind: str) -> list[float]:
    """An XYWH box of `kind` (`DEGENERATE_KINDS`); its finite sides are 10–30 % of the image."""
    bw, bh = round(rng.uniform(0.1, 0.3) * w, 2), round(rng.uniform(0.1, 0.3) * h, 2)
    x, y = round(rng.uniform(bw, w - bw), 2), round(rng.uniform(0, h - bh), 2)
    return {
        "zero_width": [x, y, 0.0, bh],
        "zero_height": [x, y, bw, 0.0],
        "negative_width": [x, y, -bw, bh],
        "not_finite": [x, float("nan"), bw, bh],
        "outside_right": [w + 1.5, y, bw, bh],
        "outside_below": [x, h + 0.5, bw, bh],
        "outside_above": [x, -bh - 2.0, bw, bh],
    }[kind]


def objects365_sample(rng: np.random.Generator, size: int) -> dict:
    """{"image": uint8 H×W×3, "annotations": [{"bbox" XYWH, "bbox_mode" 1 (XYWH_ABS), "category_id", "iscrowd"}],
    "degenerate": [[index into annotations, kind], ...]}."""
    h, w = image_size(rng, size)
    image = textured(rng, h, w)
    boxes = [random_box(rng, h, w, 0.08, 0.5) for _ in range(int(rng.integers(4, 9)))] + corner_boxes(rng, h, w)
    past_edge = random_box(rng, h, w, 0.1, 0.3)
    axis = int(rng.integers(2))
    shift = 0.5 * (past_edge[axis + 2] - past_edge[axis]) + (w, h)[axis] - past_edge[axis + 2]
    past_edge[axis] += shift
    past_edge[axis + 2] += shift
    boxes.append(past_edge)
    crowd = int(rng.integers(len(boxes)))
    annotations = []
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        inside = np.zeros((h, w), dtype=bool)
        inside[int(y0):int(np.ceil(y1)), int(x0):int(np.ceil(x1))] = True
        image[inside] = textured(rng, h, w)[inside]
        x0, y0 = round(x0, 2), round(y0, 2)
        right, bottom = (x1, y1) if k == len(boxes) - 1 else (min(x1, w), min(y1, h))
        annotations.append({"bbox": [x0, y0, round(right - x0, 2), round(bottom - y0, 2)],
                            "bbox_mode": 1, "category_id": int(rng.integers(NUM_O365)), "iscrowd": int(k == crowd)})
    kinds = [None] * len(annotations) + list(DEGENERATE_KINDS)
    annotations += [{"bbox": degenerate_box(rng, h, w, kind), "bbox_mode": 1,
                     "category_id": int(rng.integers(NUM_O365)), "iscrowd": 0} for kind in DEGENERATE_KINDS]
    order = rng.permutation(len(annotations))
    return {"image": image.round().astype(np.uint8), "annotations": [annotations[i] for i in order],
            "degenerate": [[k, kinds[i]] for k, i in enumerate(order) if kinds[i] is not None]}
