"""Hungarian matching of one prediction set to the ground truth, image by image (docs/official_behaviours.md §7.2, §6.2).

Cost per (query, target) pair:
    COST_CLASS · focal class cost + COST_BOX · L1(cx,cy,w,h) + COST_GIOU · (-GIoU)
    [+ COST_MASK · point BCE + COST_DICE · point dice, when masks are used]
Mask costs use 12,544 uniform points shared by all predictions and targets of an image, computed in fp32 with
autocast off. The assignment is solved with `scipy.optimize.linear_sum_assignment` on CPU.

Decoupled split: when the prediction set has background queries (Q > num_foreground), thing targets are matched
only to foreground queries [0, num_foreground) and stuff targets only to background queries [num_foreground, Q),
as two independent assignments. The reference adds a cost of 1e4 to forbidden pairs instead; the result is the same
whenever each group has enough queries (COCO: ≤ 53 stuff segments for 100 background queries). When a group has
more targets than queries, its surplus targets stay unmatched here instead of landing on a forbidden query.
"""

from __future__ import annotations

import torch
from detectron2.config import configurable
from scipy.optimize import linear_sum_assignment
from torch import nn

from openseed.losses.costs import focal_class_cost, giou_box_cost, l1_box_cost, mask_bce_cost, mask_dice_cost
from openseed.losses.point_sampling import point_sample
from openseed.utils.random_draws import TrainingDraws

MatchIndices = list[tuple[torch.Tensor, torch.Tensor]]


def _solve(cost: torch.Tensor, query_ids: torch.Tensor, target_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Optimal assignment restricted to `query_ids` x `target_ids` (int64 index tensors on CPU)."""
    if len(query_ids) == 0 or len(target_ids) == 0:
        empty = torch.zeros(0, dtype=torch.int64)
        return empty, empty
    rows, cols = linear_sum_assignment(cost[query_ids][:, target_ids].numpy())
    return query_ids[torch.as_tensor(rows, dtype=torch.int64)], target_ids[torch.as_tensor(cols, dtype=torch.int64)]


class HungarianMatcher(nn.Module):
    """One-to-one assignment between queries and ground-truth objects; no parameters, no gradients."""

    @configurable
    def __init__(
        self,
        *,
        cost_class: float,
        cost_mask: float,
        cost_dice: float,
        cost_box: float,
        cost_giou: float,
        num_points: int,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        reference_thing_id_bound: int = 0,
    ):
        """
        Args:
            cost_class, cost_mask, cost_dice, cost_box, cost_giou: weights of the cost terms.
            num_points: uniform points per image for the mask costs (12,544 in the reference).
            focal_alpha, focal_gamma: parameters of the focal class cost.
            reference_thing_id_bound: reference quirk — when > 0, the thing/stuff split takes class ids below it as
                things (the official matcher hard-codes 80, COCO's thing count, for every vocabulary); 0 uses the
                targets' "is_thing" flags.
        """
        super().__init__()
        self.cost_class = cost_class
        self.cost_mask = cost_mask
        self.cost_dice = cost_dice
        self.cost_box = cost_box
        self.cost_giou = cost_giou
        self.num_points = num_points
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.reference_thing_id_bound = reference_thing_id_bound

    @classmethod
    def from_config(cls, cfg) -> dict:
        dec = cfg.MODEL.DECODER
        return {
            "cost_class": dec.COST_CLASS_WEIGHT,
            "cost_mask": dec.COST_MASK_WEIGHT,
            "cost_dice": dec.COST_DICE_WEIGHT,
            "cost_box": dec.COST_BOX_WEIGHT,
            "cost_giou": dec.COST_GIOU_WEIGHT,
            "num_points": dec.TRAIN_NUM_POINTS,
            "focal_alpha": dec.FOCAL_ALPHA,
            "focal_gamma": dec.FOCAL_GAMMA,
            "reference_thing_id_bound": dec.REFERENCE_THING_ID_BOUND,
        }

    def cost_matrix(self, outputs: dict, target: dict, image: int, use_masks: bool,
                    draws: TrainingDraws | None = None, key: str = "match_points") -> torch.Tensor:
        """Total (Q, N) fp32 cost of image `image`; see `forward` for the inputs."""
        labels = target["labels"]
        cost = self.cost_class * focal_class_cost(
            outputs["pred_logits"][image], labels, self.focal_alpha, self.focal_gamma
        )
        pred_boxes = outputs["pred_boxes"][image]
        cost = cost + self.cost_box * l1_box_cost(pred_boxes, target["boxes"])
        cost = cost + self.cost_giou * giou_box_cost(pred_boxes, target["boxes"])
        if use_masks:
            pred_masks = outputs["pred_masks"][image].float()
            coords = (draws or TrainingDraws()).uniform(key, (1, self.num_points, 2), pred_masks.device)
            pred_points = point_sample(pred_masks[None], coords)[0]
            target_points = point_sample(target["masks"].float()[None], coords)[0]
            mask_cost = self.cost_mask * mask_bce_cost(pred_points, target_points)
            mask_cost = mask_cost + self.cost_dice * mask_dice_cost(pred_points, target_points)
            if "mask_valid" in target:
                mask_cost = mask_cost * target["mask_valid"].to(mask_cost.dtype)[None, :]
            cost = cost + mask_cost
        return cost

    @torch.no_grad()
    def forward(
        self, outputs: dict, targets: list[dict], *, use_masks: bool, num_foreground: int | None,
        draws: TrainingDraws | None = None, key: str = "match_points",
    ) -> MatchIndices:
        """Match every image of the batch.

        Args:
            outputs: one prediction set of B images and Q queries:
                "pred_logits": (B, Q, K) class logits over the batch vocabulary;
                "pred_boxes": (B, Q, 4) (cx, cy, w, h) in [0, 1];
                "pred_masks": (B, Q, h, w) mask logits (read only when `use_masks`).
            targets: B dicts with
                "labels": (N,) int64 in [0, K); "boxes": (N, 4) normalised (cx, cy, w, h);
                "masks": (N, H, W) float in [0, 1] (when `use_masks`; any resolution);
                "is_thing": (N,) bool (when the split applies);
                optional "mask_valid": (N,) bool — targets without a usable mask get no mask cost.
            use_masks: add the point-sampled BCE and dice costs.
            num_foreground: queries [0, num_foreground) are foreground; if it is smaller than Q the thing/stuff
                split applies. None (or >= Q) matches every target to every query.
            draws, key: source of the mask-cost points, one (1, P, 2) draw per image with targets (default: fresh).
        Returns:
            B pairs (query_indices, target_indices) of int64 CPU tensors of equal length min(Q, N) (fewer if a split
            group has more targets than queries), sorted by query index.
        """
        num_queries = outputs["pred_logits"].shape[1]
        split = num_foreground is not None and num_foreground < num_queries
        all_queries = torch.arange(num_queries)
        indices = []
        for image, target in enumerate(targets):
            num_targets = len(target["labels"])
            if num_targets == 0:
                empty = torch.zeros(0, dtype=torch.int64)
                indices.append((empty, empty))
                continue
            with torch.autocast(device_type=outputs["pred_logits"].device.type, enabled=False):
                cost = self.cost_matrix(outputs, target, image, use_masks, draws, key).cpu()
            if not torch.isfinite(cost).all():
                raise FloatingPointError(f"non-finite matching cost for image {image}: predictions contain NaN/inf")
            all_targets = torch.arange(num_targets)
            if split:
                if self.reference_thing_id_bound > 0:
                    is_thing = target["labels"].cpu() < self.reference_thing_id_bound
                else:
                    is_thing = target["is_thing"].cpu().bool()
                fg_q, fg_t = _solve(cost, all_queries[:num_foreground], all_targets[is_thing])
                bg_q, bg_t = _solve(cost, all_queries[num_foreground:], all_targets[~is_thing])
                query_ids, target_ids = torch.cat([fg_q, bg_q]), torch.cat([fg_t, bg_t])
            else:
                query_ids, target_ids = _solve(cost, all_queries, all_targets)
            order = query_ids.argsort()
            indices.append((query_ids[order], target_ids[order]))
        return indices
