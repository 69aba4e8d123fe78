"""Pairwise matching costs between Q predictions and N targets of one image (docs/official_behaviours.md §7.2).

Every function returns a (Q, N) fp32 cost matrix; lower is a better match. No gradients are needed (the
matcher runs under `torch.no_grad`), and none of these functions reduce over images.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from openseed.losses.box_ops import box_cxcywh_to_xyxy, pairwise_generalized_box_iou


def focal_class_cost(logits: torch.Tensor, labels: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Focal-style class cost, exactly the reference formula.

    With p = sigmoid(logit) of the target's class column:
    cost = alpha (1-p)^gamma (-log(p + 1e-6)) - (1-alpha) p^gamma (-log(1-p + 1e-6)).

    Args:
        logits: (Q, K) class logits.
        labels: (N,) int64 class ids in [0, K).
    Returns:
        (Q, N) cost.
    """
    prob = logits.float().sigmoid()[:, labels]
    positive = alpha * (1 - prob) ** gamma * -(prob + 1e-6).log()
    negative = (1 - alpha) * prob**gamma * -(1 - prob + 1e-6).log()
    return positive - negative


def l1_box_cost(pred_boxes: torch.Tensor, target_boxes: torch.Tensor) -> torch.Tensor:
    """L1 distance of normalised (cx, cy, w, h) boxes: (Q, 4), (N, 4) -> (Q, N)."""
    return torch.cdist(pred_boxes.float(), target_boxes.float(), p=1)


def giou_box_cost(pred_boxes: torch.Tensor, target_boxes: torch.Tensor) -> torch.Tensor:
    """-GIoU of (cx, cy, w, h) boxes: (Q, 4), (N, 4) -> (Q, N); finite for zero-area boxes."""
    return -pairwise_generalized_box_iou(
        box_cxcywh_to_xyxy(pred_boxes.float()), box_cxcywh_to_xyxy(target_boxes.float())
    )


def mask_bce_cost(pred_points: torch.Tensor, target_points: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy over points between every prediction and every target.

    Args:
        pred_points: (Q, P) mask logits at P points.
        target_points: (N, P) target values in [0, 1] at the same points.
    Returns:
        (Q, N) cost.
    """
    pred_points = pred_points.float()
    target_points = target_points.float()
    loss_if_one = F.softplus(-pred_points)  # BCE(x, 1)
    loss_if_zero = F.softplus(pred_points)  # BCE(x, 0)
    cost = loss_if_one @ target_points.T + loss_if_zero @ (1 - target_points).T
    return cost / pred_points.shape[1]


def mask_dice_cost(pred_points: torch.Tensor, target_points: torch.Tensor) -> torch.Tensor:
    """Dice cost with +1 smoothing: 1 - (2 Σ σ(x) y + 1) / (Σ σ(x) + Σ y + 1); (Q, P), (N, P) -> (Q, N)."""
    prob = pred_points.float().sigmoid()
    target_points = target_points.float()
    numerator = 2 * prob @ target_points.T
    denominator = prob.sum(-1)[:, None] + target_points.sum(-1)[None, :]
    return 1 - (numerator + 1) / (denominator + 1)
