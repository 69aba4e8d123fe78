"""Loss terms on already-paired predictions and targets (docs/official_behaviours.md §7.3), each returning an unnormalised sum.

The criterion divides these sums by its normaliser (`num_masks`, times the number of DN groups for conditioned
queries) and multiplies by the configured weights.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from openseed.losses.box_ops import box_cxcywh_to_xyxy, paired_generalized_box_iou
from openseed.losses.point_sampling import importance_points, point_sample
from openseed.utils.random_draws import TrainingDraws


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Element-wise sigmoid focal loss (RetinaNet): same shape as `logits`; `targets` in {0, 1}, same shape."""
    logits = logits.float()
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return alpha_t * (1 - p_t) ** gamma * ce


def box_l1_sum(pred_boxes: torch.Tensor, target_boxes: torch.Tensor) -> torch.Tensor:
    """Σ |pred - target| over M pairs of normalised (cx, cy, w, h) boxes (M, 4) -> scalar."""
    return F.l1_loss(pred_boxes.float(), target_boxes.float(), reduction="sum")


def box_giou_sum(pred_boxes: torch.Tensor, target_boxes: torch.Tensor) -> torch.Tensor:
    """Σ (1 - GIoU) over M pairs of (cx, cy, w, h) boxes (M, 4) -> scalar; finite for zero-area boxes."""
    giou = paired_generalized_box_iou(box_cxcywh_to_xyxy(pred_boxes.float()), box_cxcywh_to_xyxy(target_boxes.float()))
    return (1 - giou).sum()


def mask_bce_sum(point_logits: torch.Tensor, point_targets: torch.Tensor) -> torch.Tensor:
    """Σ over M masks of the mean BCE over P points: (M, P), (M, P) -> scalar."""
    return F.binary_cross_entropy_with_logits(point_logits, point_targets, reduction="none").mean(1).sum()


def mask_dice_sum(point_logits: torch.Tensor, point_targets: torch.Tensor) -> torch.Tensor:
    """Σ over M masks of 1 - (2 Σ σ(x) y + 1) / (Σ σ(x) + Σ y + 1): (M, P), (M, P) -> scalar."""
    prob = point_logits.sigmoid()
    numerator = 2 * (prob * point_targets).sum(-1)
    denominator = prob.sum(-1) + point_targets.sum(-1)
    return (1 - (numerator + 1) / (denominator + 1)).sum()


def _sample_targets(masks: torch.Tensor, ids: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Sample target `ids[k]` of `masks` (N, H, W) at `coords[k]` (M, P, 2) -> (M, P).

    A target may be paired several times (conditioned queries: once per group); each round handles the k-th
    occurrence of every target, so every round indexes distinct targets.
    """
    samples = coords.new_zeros(coords.shape[:2])
    occurrence = torch.tril(ids[:, None] == ids[None, :], diagonal=-1).sum(1)
    for round_ in range(int(occurrence.max()) + 1 if len(ids) else 0):
        chosen = occurrence == round_
        per_target = coords.new_zeros(masks.shape[0], coords.shape[1], 2)
        per_target[ids[chosen]] = coords[chosen]
        sampled = point_sample(masks.to(torch.float32)[:, None], per_target)[:, 0]
        samples[chosen] = sampled[ids[chosen]]
    return samples


def point_sampled_mask_sums(
    pred_masks: torch.Tensor,
    target_masks: list[torch.Tensor],
    target_ids: list[torch.Tensor],
    num_points: int,
    oversample_ratio: float,
    importance_sample_ratio: float,
    draws: TrainingDraws | None = None,
    key: str = "mask_points",
) -> tuple[torch.Tensor, torch.Tensor]:
    """BCE and dice sums of M paired masks on importance-sampled points (computed in fp32).

    Target masks are sampled in place (each target gets the points of the prediction paired with it), so matched
    masks are never copied at full resolution.

    Args:
        pred_masks: (M, h, w) mask logits of the paired predictions, image by image.
        target_masks: per image (N_b, H, W) targets in [0, 1], any resolution (same normalised coordinates).
        target_ids: per image (M_b,) int64 indices into that image's targets; Σ M_b = M, in the order of `pred_masks`.
        draws, key: source of the point-sampling draws (`importance_points`); default: fresh draws.
    Returns:
        (bce_sum, dice_sum) scalars, see `mask_bce_sum` / `mask_dice_sum`; zeros (with graph) when M = 0.
    """
    if pred_masks.shape[0] == 0:
        zero = pred_masks.sum() * 0.0
        return zero, zero
    pred_masks = pred_masks.float()[:, None]
    coords = importance_points(pred_masks, num_points, oversample_ratio, importance_sample_ratio, draws, key)
    point_targets = []
    start = 0
    with torch.no_grad():
        for masks, ids in zip(target_masks, target_ids):
            ids = ids.to(coords.device)
            point_targets.append(_sample_targets(masks, ids, coords[start : start + len(ids)]))
            start += len(ids)
    point_logits = point_sample(pred_masks, coords)[:, 0]
    point_targets = torch.cat(point_targets)
    return mask_bce_sum(point_logits, point_targets), mask_dice_sum(point_logits, point_targets)
