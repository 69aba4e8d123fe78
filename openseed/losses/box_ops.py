"""Box conversions and a generalized IoU that stays finite for zero-area boxes.

Boxes are float tensors whose last dimension holds 4 numbers: (cx, cy, w, h) or (x0, y0, x1, y1), both normalised to
the padded input; the conversions between the two live in `openseed.structures` (re-exported here). torchvision's `generalized_box_iou` divides by the union and by the enclosing area without a guard,
so two zero-area boxes (empty stuff segments, collapsed predictions) give NaN; here both denominators are clamped.
"""

from __future__ import annotations

import torch

from openseed.structures import box_cxcywh_to_xyxy, box_xyxy_to_cxcywh

__all__ = [
    "box_cxcywh_to_xyxy",
    "box_xyxy_to_cxcywh",
    "paired_generalized_box_iou",
    "pairwise_generalized_box_iou",
]

_EPS = 1e-7


def _giou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """GIoU of broadcastable xyxy boxes `a` (..., 4) and `b` (..., 4) -> (...)."""
    area_a = (a[..., 2] - a[..., 0]).clamp(min=0) * (a[..., 3] - a[..., 1]).clamp(min=0)
    area_b = (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)
    inter_wh = (torch.minimum(a[..., 2:], b[..., 2:]) - torch.maximum(a[..., :2], b[..., :2])).clamp(min=0)
    inter = inter_wh[..., 0] * inter_wh[..., 1]
    union = area_a + area_b - inter
    iou = inter / union.clamp(min=_EPS)
    enclose_wh = (torch.maximum(a[..., 2:], b[..., 2:]) - torch.minimum(a[..., :2], b[..., :2])).clamp(min=0)
    enclose = enclose_wh[..., 0] * enclose_wh[..., 1]
    return iou - (enclose - union) / enclose.clamp(min=_EPS)


def pairwise_generalized_box_iou(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    """GIoU of every pair: xyxy `boxes_a` (N, 4), `boxes_b` (M, 4) -> (N, M), values in [-1, 1]."""
    return _giou(boxes_a[:, None, :], boxes_b[None, :, :])


def paired_generalized_box_iou(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    """GIoU of corresponding boxes: xyxy (N, 4) and (N, 4) -> (N,)."""
    return _giou(boxes_a, boxes_b)
