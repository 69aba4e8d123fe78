"""The (H_l, W_l) sizes of the levels of a flattened multi-scale feature map, as Python pairs.

The model passes level sizes as lists of pairs taken from the feature maps' shapes, not as an L×2 tensor: read back
from a tensor they would become data-dependent values under `torch.export`, which then cannot export a graph for
every image size (`openseed.export`). Tensors are still accepted (the official signature of `MSDeformAttn`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def level_shapes(spatial_shapes: torch.Tensor | Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """[(H_l, W_l), ...] from an L×2 tensor or a sequence of pairs (taken as given: symbolic sizes stay symbolic)."""
    if isinstance(spatial_shapes, torch.Tensor):
        return [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
    return [(h, w) for h, w in spatial_shapes]


def level_start_index(shapes: Sequence[tuple[int, int]], device: torch.device) -> torch.Tensor:
    """L int64: the index of each level's first token in the flattened map."""
    starts = [0]
    for h, w in shapes[:-1]:
        starts.append(starts[-1] + h * w)
    return torch.tensor(starts, dtype=torch.long, device=device)
