"""Objects365 mask assistance: pseudo-masks for box-only targets from conditioned mask decoding.

[DESIGN, docs/official_behaviours.md §6.3 — not in the official code] For `det` batches the decoder runs one extra group of conditioned
queries (GT box without noise + GT concept embedding) and returns their mask logits as
`outputs["mask_assist"] = {"pred_masks": (B, G, h, w), "valid": (B, G) bool}`, slot j of image i = GT j of image i.
These logits are detached and thresholded into a pseudo-mask per GT box (optionally restricted to the box). The
criterion then adds mask costs against the pseudo-masks to the matching of the foreground queries, and optionally a
mask loss whose weight ramps up linearly with the training iteration.

Enabled by MODEL.DECODER.O365_MASK_ASSIST; settings under MODEL.DECODER.MASK_ASSIST.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class MaskAssistSettings:
    """MODEL.DECODER.MASK_ASSIST.* (see `openseed/config.py`).

    Attributes:
        threshold: sigmoid threshold turning conditioned mask logits into a pseudo-mask.
        clip_to_box: keep only pseudo-mask pixels whose centre lies inside the GT box.
        cost_mask, cost_dice: weights of the point BCE / dice costs added to the det matching.
        loss_weight: final multiplier of the pseudo-mask loss (0 disables it; its keys are then absent).
        ramp_iters: the multiplier grows linearly from 0 at iteration 0 to `loss_weight` at `ramp_iters`.
    """

    threshold: float = 0.5
    clip_to_box: bool = True
    cost_mask: float = 5.0
    cost_dice: float = 5.0
    loss_weight: float = 0.0
    ramp_iters: int = 0

    @classmethod
    def from_config(cls, cfg) -> MaskAssistSettings:
        node = cfg.MODEL.DECODER.MASK_ASSIST
        return cls(
            threshold=node.THRESHOLD,
            clip_to_box=node.CLIP_TO_BOX,
            cost_mask=node.COST_MASK_WEIGHT,
            cost_dice=node.COST_DICE_WEIGHT,
            loss_weight=node.LOSS_WEIGHT,
            ramp_iters=node.RAMP_ITERS,
        )

    def loss_scale(self, iteration: int) -> float:
        """Multiplier of the pseudo-mask loss at `iteration` (0-based): loss_weight · min(1, iteration / ramp_iters)."""
        if self.ramp_iters <= 0:
            return self.loss_weight
        return self.loss_weight * min(1.0, max(iteration, 0) / self.ramp_iters)


def box_region(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pixels of an (height, width) grid covering the padded input whose centres lie inside each box.

    Args:
        boxes: (N, 4) normalised (cx, cy, w, h).
    Returns:
        (N, height, width) bool.
    """
    ys = (torch.arange(height, device=boxes.device, dtype=torch.float32) + 0.5) / height
    xs = (torch.arange(width, device=boxes.device, dtype=torch.float32) + 0.5) / width
    cx, cy, w, h = boxes.float().unbind(-1)
    inside_x = (xs[None, :] >= (cx - w / 2)[:, None]) & (xs[None, :] <= (cx + w / 2)[:, None])
    inside_y = (ys[None, :] >= (cy - h / 2)[:, None]) & (ys[None, :] <= (cy + h / 2)[:, None])
    return inside_y[:, :, None] & inside_x[:, None, :]


def build_pseudo_targets(
    assist: dict | None, targets: list[dict], threshold: float, clip_to_box: bool
) -> list[dict]:
    """Targets with pseudo-masks for box-only GT.

    Args:
        assist: `outputs["mask_assist"]` ("pred_masks": (B, G, h, w) logits, "valid": (B, G) bool) or None when the
            decoder produced no conditioned masks for this batch (e.g. no GT at all).
        targets: B dicts with "labels" (N_i,) and "boxes" (N_i, 4); N_i <= G.
    Returns:
        B shallow copies of `targets` with "masks": (N_i, h, w) float {0, 1} and "mask_valid": (N_i,) bool. A GT is
        valid when its slot is valid and its pseudo-mask is not empty; invalid GT get no mask cost or loss.
    """
    pseudo = []
    for image, target in enumerate(targets):
        num_targets = len(target["labels"])
        if assist is None:
            masks = target["boxes"].new_zeros(num_targets, 1, 1)
            valid = torch.zeros(num_targets, dtype=torch.bool, device=target["boxes"].device)
        else:
            logits, slot_valid = assist["pred_masks"][image], assist["valid"][image]
            if num_targets > logits.shape[0]:
                raise ValueError(
                    f"mask_assist has {logits.shape[0]} slots for image {image} but the image has {num_targets} targets"
                )
            masks = logits[:num_targets].detach().float().sigmoid() > threshold
            if clip_to_box:
                masks = masks & box_region(target["boxes"], logits.shape[-2], logits.shape[-1])
            valid = slot_valid[:num_targets].bool() & masks.flatten(1).any(dim=1)
            masks = masks.float()
        pseudo.append({**target, "masks": masks, "mask_valid": valid})
    return pseudo
