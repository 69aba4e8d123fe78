"""Multi-scale deformable attention as one weighted gather (`F.embedding_bag`), a faster CPU kernel.

Same contract and numbers as the reference `ms_deform_attn_core_pytorch` (bilinear sampling in the pixel-area
convention, zero padding outside each map, attention-weighted sum over levels and points), computed differently:
every sampling point contributes its four bilinear corners, each with weight attention × corner weight, and the
N·Lq·M output rows are the weighted sums of their L·P·4 value rows, gathered by `F.embedding_bag(mode="sum")`
straight from the N×S×M×D value tensor. No per-level N·M×D×Lq×P sample tensors are materialised, which saves most of
the time and memory of the reference on CPU. Each level map gets a zero border of two pixels, so corners outside the
map read zeros (as the reference's zero padding) without a validity mask; points further out are clamped onto the
border. Values and gradients (value, sampling locations, attention weights) equal the reference's up to float
rounding (summation order); `tests/modeling/test_deform_attn_embedding_bag.py` checks them.

Shapes (N batch, Lq queries, S = Σ H_l·W_l value tokens, M heads, D channels per head, L levels, P points):
value N×S×M×D, spatial_shapes L×2 or L pairs (H_l, W_l), sampling_locations N×Lq×M×L×P×2 (x, y in [0, 1]),
attention_weights N×Lq×M×L×P -> N×Lq×(M·D).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .level_shapes import level_shapes

BORDER = 2  # zero pixels around each map: corners of points clamped to [-2, size] all land on zeros


def _bordered_value_table(value: torch.Tensor, shapes: list[tuple[int, int]]) -> torch.Tensor:
    """N×S×M×D -> (N·S'·M)×D rows, S' = Σ (H_l + 4)(W_l + 4): every level map with its zero border, row-major."""
    n, _, m, d = value.shape
    levels = value.split([h * w for h, w in shapes], dim=1)
    bordered = [F.pad(level.reshape(n, h, w, m, d), (0, 0, 0, 0, BORDER, BORDER, BORDER, BORDER)).reshape(n, -1, m, d)
                for level, (h, w) in zip(levels, shapes)]
    return torch.cat(bordered, dim=1).reshape(-1, d)


def ms_deform_attn_core_embedding_bag(
    value: torch.Tensor,
    spatial_shapes,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Multi-scale deformable attention by weighted gather; shapes in the module docstring."""
    n, _, m, d = value.shape
    _, num_queries, _, num_levels, num_points, _ = sampling_locations.shape
    shapes = level_shapes(spatial_shapes)
    table = _bordered_value_table(value, shapes)
    device = value.device
    sizes = torch.tensor(shapes, dtype=value.dtype, device=device)[:, None]  # L×1×2 (H_l, W_l), broadcast over P
    bordered_sizes = [(h + 2 * BORDER) * (w + 2 * BORDER) for h, w in shapes]
    bordered_widths = torch.tensor([w + 2 * BORDER for _, w in shapes], device=device)
    bordered_starts = torch.tensor([0] + bordered_sizes[:-1], device=device).cumsum(0)

    # Pixel coordinates exactly as grid_sample unnormalises the grid 2·loc − 1 (align_corners=False).
    grid = 2 * sampling_locations - 1
    x = ((grid[..., 0] + 1) * sizes[..., 1] - 1) / 2  # N×Lq×M×L×P
    y = ((grid[..., 1] + 1) * sizes[..., 0] - 1) / 2
    x0, y0 = x.floor(), y.floor()
    fx, fy = x - x0, y - y0
    col = torch.minimum(x0.clamp(min=-BORDER), sizes[..., 1] + (BORDER - 2)).long() + BORDER
    row = torch.minimum(y0.clamp(min=-BORDER), sizes[..., 0] + (BORDER - 2)).long() + BORDER
    token = bordered_starts[:, None] + row * bordered_widths[:, None] + col
    image = torch.arange(n, device=device).view(n, 1, 1, 1, 1) * sum(bordered_sizes)
    head = torch.arange(m, device=device).view(1, 1, m, 1, 1)
    top_left = (image + token) * m + head  # table row of the top-left corner
    corner_offsets = torch.stack([torch.zeros_like(bordered_widths), torch.ones_like(bordered_widths),
                                  bordered_widths, bordered_widths + 1], dim=-1) * m  # L×4: TL, TR, BL, BR
    indices = top_left[..., None] + corner_offsets[:, None, :]
    left, right = attention_weights * (1 - fx), attention_weights * fx
    weights = torch.stack([left * (1 - fy), right * (1 - fy), left * fy, right * fy], dim=-1)
    bag = num_levels * num_points * 4
    output = F.embedding_bag(indices.reshape(-1, bag), table, per_sample_weights=weights.reshape(-1, bag), mode="sum")
    return output.view(n, num_queries, m * d)
