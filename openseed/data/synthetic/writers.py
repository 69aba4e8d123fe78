"""Annotation records of one rendered scene in COCO, COCO-panoptic and LVIS formats."""

from __future__ import annotations

import numpy as np
import pycocotools.mask as mask_util

from .drawing import Scene

LABEL_DIVISOR = 1000  # panoptic segment id = category id × 1000 + instance number


def mask_bbox(mask: np.ndarray) -> list[float]:
    """Tight COCO box [x, y, w, h] covering every pixel of a non-empty H×W bool mask."""
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    return [float(x0), float(y0), float(xs.max() + 1 - x0), float(ys.max() + 1 - y0)]


def mask_rle(mask: np.ndarray) -> dict:
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def coco_polygon(polygon: np.ndarray) -> list[float]:
    """Pixel-centre vertices (as drawn) to COCO's continuous coordinates (pixel i spans [i, i+1))."""
    return [round(float(v), 2) for v in (np.round(polygon) + 0.5).reshape(-1)]


def panoptic_ids(scene: Scene, thing_category: list[int], stuff_category: dict[str, int]) -> tuple[np.ndarray, list]:
    """(H×W int64 segment-id map, segments_info) of a scene; void pixels are 0.

    `thing_category[k]` is the category id of `scene.objects[k]`; `stuff_category` maps a stuff name to its id.
    """
    ids = np.zeros(scene.stuff_labels.shape, dtype=np.int64)
    segments = []
    for band, name in enumerate(scene.stuff_names):
        region = scene.stuff_labels == band
        for obj in scene.objects:
            region &= ~obj.mask
        if region.any():
            segment_id = stuff_category[name] * LABEL_DIVISOR
            ids[region] = segment_id
            segments.append(_segment_info(segment_id, stuff_category[name], region))
    for number, (obj, category) in enumerate(zip(scene.objects, thing_category), start=1):
        segment_id = category * LABEL_DIVISOR + number
        ids[obj.mask] = segment_id
        segments.append(_segment_info(segment_id, category, obj.mask))
    return ids, segments


def _segment_info(segment_id: int, category: int, mask: np.ndarray) -> dict:
    return {"id": int(segment_id), "category_id": int(category), "iscrowd": 0,
            "bbox": mask_bbox(mask), "area": int(mask.sum())}


def ids_to_rgb(ids: np.ndarray) -> np.ndarray:
    """Segment ids (H×W) to the COCO panoptic PNG encoding (H×W×3 uint8, id = R + 256 G + 256² B)."""
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536 % 256], axis=-1).astype(np.uint8)


def semantic_map(ids: np.ndarray, segments: list[dict], contiguous: dict[int, int], ignore: int = 255) -> np.ndarray:
    """Contiguous class index per pixel (H×W uint8), `ignore` where no segment is."""
    semantic = np.full(ids.shape, ignore, dtype=np.uint8)
    for segment in segments:
        semantic[ids == segment["id"]] = contiguous[segment["category_id"]]
    return semantic


def instance_annotation(ann_id: int, image_id: int, category: int, mask: np.ndarray, segmentation) -> dict:
    """A COCO/LVIS annotation; `segmentation` is None (boxes only), "rle" or a polygon (V×2 array)."""
    ann = {"id": ann_id, "image_id": image_id, "category_id": int(category), "bbox": mask_bbox(mask),
           "area": int(mask.sum()), "iscrowd": 0}
    if isinstance(segmentation, str):
        ann["segmentation"] = mask_rle(mask)
    elif segmentation is not None:
        ann["segmentation"] = [coco_polygon(segmentation)]
    return ann
