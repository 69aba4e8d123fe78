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
    """Multi-scale deformable attention by weighted gather; shapes in the module docstring.

    The index and weight arithmetic runs on R×(L·P) tables (R = N·Lq·M sampling rows) against per-column constants
    and int32 indices. Each bag lists its terms in (level, point, corner) order, which fixes the float summation
    order: another order changes the last bits, enough to flip near-tied encoder proposals of the fidelity fixtures.
    """
    n, _, m, d = value.shape
    _, num_queries, _, num_levels, num_points, _ = sampling_locations.shape
    shapes = level_shapes(spatial_shapes)
    table = _bordered_value_table(value, shapes)
    device = value.device
    rows, columns = n * num_queries * m, num_levels * num_points
    bordered_sizes = [(h + 2 * BORDER) * (w + 2 * BORDER) for h, w in shapes]

    def per_column(per_level: list, dtype: torch.dtype) -> torch.Tensor:  # L values -> (L·P), one per column
        return torch.tensor(per_level, dtype=dtype, device=device).repeat_interleave(num_points)

    size_xy = torch.stack([per_column([w for _, w in shapes], value.dtype),
                           per_column([h for h, _ in shapes], value.dtype)], dim=-1).reshape(-1)  # (L·P·2) (W, H)
    # int32 indices halve the bytes of every index op; int64 for exported graphs (ONNX shape arithmetic is int64)
    index_dtype = torch.long if torch.compiler.is_exporting() or table.shape[0] >= 2**31 else torch.int32
    bordered_widths = per_column([w + 2 * BORDER for _, w in shapes], index_dtype)
    bordered_starts = per_column([sum(bordered_sizes[:level]) for level in range(num_levels)], index_dtype)

    # Pixel coordinates exactly as grid_sample unnormalises the grid 2·loc − 1 (align_corners=False).
    grid = 2 * sampling_locations.reshape(rows, columns * 2) - 1
    xy = ((grid + 1) * size_xy - 1) / 2  # R×(L·P·2), (x, y) per column
    xy0 = xy.floor()
    fraction = (xy - xy0).view(rows, columns, 2)
    corner = (torch.minimum(xy0.clamp(min=-BORDER), size_xy + (BORDER - 2)).to(index_dtype) + BORDER).view(rows, columns, 2)
    token = bordered_starts + corner[..., 1] * bordered_widths + corner[..., 0]  # R×(L·P) top-left token of its level
    image = torch.arange(n, dtype=index_dtype, device=device).repeat_interleave(num_queries * m) * sum(bordered_sizes)
    head = torch.arange(m, dtype=index_dtype, device=device).repeat(n * num_queries)
    top_left = (token + image[:, None]) * m + head[:, None]  # table row of the top-left corner
    step_y = bordered_widths * m
    corner_offsets = torch.stack([torch.zeros_like(step_y), torch.full_like(step_y, m), step_y, step_y + m], dim=-1)
    indices = top_left[:, :, None] + corner_offsets  # R×(L·P)×4: top-left, top-right, bottom-left, bottom-right
    attention = attention_weights.reshape(rows, columns)
    fraction_x, fraction_y = fraction[..., 0], fraction[..., 1]
    left, right = attention * (1 - fraction_x), attention * fraction_x
    # (1 − y) twice, as before: the gradient of the sampling locations then sums in the same order (bit-identical)
    weights = torch.stack([left * (1 - fraction_y), right * (1 - fraction_y), left * fraction_y, right * fraction_y],
                          dim=-1)  # as indices
    bag = num_levels * num_points * 4  # each bag in the reference's order (level, point, corner)
    output = F.embedding_bag(indices.reshape(-1, bag), table, per_sample_weights=weights.reshape(-1, bag), mode="sum")
    return output.view(n, num_queries, m * d)
