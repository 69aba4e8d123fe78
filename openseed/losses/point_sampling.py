"""Point sampling of mask logits and targets (PointRend style), used by the matcher and the mask losses.

Coordinates are (x, y) in [0, 1]² of the padded input, so predictions at 1/4 resolution and targets at full
resolution are sampled at the same image locations. Sampling is bilinear, `align_corners=False`, zero outside.
Same numerics as `detectron2.projects.point_rend.point_features` (tested against it).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from openseed.utils.random_draws import TrainingDraws


def point_sample(maps: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinearly sample `maps` (N, C, H, W) at `coords` (N, P, 2) in [0, 1]² -> (N, C, P)."""
    grid = 2.0 * coords.unsqueeze(2) - 1.0
    return F.grid_sample(maps, grid, mode="bilinear", align_corners=False).squeeze(3)


def importance_points(
    logits: torch.Tensor, num_points: int, oversample_ratio: float, importance_sample_ratio: float,
    draws: TrainingDraws | None = None, key: str = "mask_points",
) -> torch.Tensor:
    """Points concentrated where the mask is uncertain (|logit| small), plus uniform points.

    Draws `int(num_points * oversample_ratio)` uniform candidates per mask, keeps the
    `int(importance_sample_ratio * num_points)` with the highest uncertainty -|logit| (measured on the sampled
    logit, not on the coarse grid), and fills the rest with fresh uniform points.

    Args:
        logits: (N, 1, h, w) mask logits; no gradient flows into the point choice.
        draws, key: source of the two uniform draws (candidates, then fresh points); default: fresh draws.
    Returns:
        (N, num_points, 2) fp32 coordinates in [0, 1]².
    """
    if oversample_ratio < 1:
        raise ValueError(f"oversample_ratio must be >= 1, got {oversample_ratio}")
    if not 0.0 <= importance_sample_ratio <= 1.0:
        raise ValueError(f"importance_sample_ratio must be in [0, 1], got {importance_sample_ratio}")
    num_masks = logits.shape[0]
    num_candidates = int(num_points * oversample_ratio)
    with torch.no_grad():
        draws = draws or TrainingDraws()
        candidates = draws.uniform(key, (num_masks, num_candidates, 2), logits.device)
        uncertainty = -point_sample(logits.detach().float(), candidates)[:, 0].abs()
        num_uncertain = int(importance_sample_ratio * num_points)
        top = uncertainty.topk(num_uncertain, dim=1).indices
        chosen = torch.gather(candidates, 1, top[..., None].expand(-1, -1, 2))
        fresh = draws.uniform(key, (num_masks, num_points - num_uncertain, 2), logits.device)
        return torch.cat([chosen, fresh], dim=1)
