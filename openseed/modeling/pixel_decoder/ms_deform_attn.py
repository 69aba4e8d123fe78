"""Multi-scale deformable attention (Deformable DETR), with an explicitly selected sampling kernel.

Shapes (N batch, Lq queries, S = Σ_l H_l·W_l value tokens, M heads, D = d_model / M, L levels, P points):
  value                N×S×M×D
  spatial_shapes       (H_l, W_l) per level in the order of the flattened value: an L×2 int64 tensor or a list of
                       pairs (`level_shapes`; the model passes lists, whose sizes stay symbolic under `torch.export`)
  sampling_locations   N×Lq×M×L×P×2, (x, y) normalised to [0, 1] per level (0 = left/top edge, 1 = right/bottom)
  attention_weights    N×Lq×M×L×P (softmax over L·P)
  -> output            N×Lq×(M·D)

`ms_deform_attn_core_pytorch` is the reference kernel: bilinear sampling with `F.grid_sample`
(align_corners=False, zero padding outside the map), weighted sum over levels and points. Kernels are chosen by
name (`DEFORM_ATTN_KERNELS`, config key `MODEL.ENCODER.DEFORM_ATTN_IMPL`); an unknown name is an error. "auto"
(the default) runs the embedding-bag kernel on CPU tensors, where it is about twice as fast and leaner, and the
reference elsewhere: grid_sample is the fast path on CUDA, and in exported graphs ONNX Runtime runs GridSample
fast (the embedding bag's Gather of L·P·4 value rows per output ran 250× slower there at 800×1216).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from openseed.utils.amp import bf16_gemm_inputs

from .deform_attn_embedding_bag import ms_deform_attn_core_embedding_bag
from .level_shapes import level_shapes


def ms_deform_attn_core_pytorch(
    value: torch.Tensor,
    spatial_shapes,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Reference multi-scale deformable attention; shapes in the module docstring."""
    n, _, m, d = value.shape
    _, num_queries, _, num_levels, num_points, _ = sampling_locations.shape
    shapes = level_shapes(spatial_shapes)
    values_per_level = value.split([h * w for h, w in shapes], dim=1)
    grids = 2 * sampling_locations - 1
    sampled = []
    for level, (h, w) in enumerate(shapes):
        # N×HW×M×D -> (N·M)×D×H×W
        level_value = values_per_level[level].flatten(2).transpose(1, 2).reshape(n * m, d, h, w)
        # N×Lq×M×P×2 -> (N·M)×Lq×P×2
        level_grid = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        sampled.append(F.grid_sample(level_value, level_grid, mode="bilinear", padding_mode="zeros",
                                     align_corners=False))
    # (N·M)×D×Lq×(L·P), weighted by (N·M)×1×Lq×(L·P)
    weights = attention_weights.transpose(1, 2).reshape(n * m, 1, num_queries, num_levels * num_points)
    output = (torch.stack(sampled, dim=-2).flatten(-2) * weights).sum(-1).view(n, m * d, num_queries)
    return output.transpose(1, 2).contiguous()


def ms_deform_attn_core_auto(
    value: torch.Tensor,
    spatial_shapes,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """The embedding-bag kernel for CPU tensors in eager mode; the reference kernel on other devices and in exported
    graphs (`torch.compiler.is_exporting()`); same contract."""
    eager_cpu = value.device.type == "cpu" and not torch.compiler.is_exporting()
    kernel = ms_deform_attn_core_embedding_bag if eager_cpu else ms_deform_attn_core_pytorch
    return kernel(value, spatial_shapes, sampling_locations, attention_weights)


DEFORM_ATTN_KERNELS: dict[str, Callable[..., torch.Tensor]] = {
    "pytorch": ms_deform_attn_core_pytorch,
    "embedding_bag": ms_deform_attn_core_embedding_bag,  # same numbers up to rounding, faster and leaner on CPU
    "auto": ms_deform_attn_core_auto,
}


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention with the official parameter names and initialisation.

    `forward(query N×Lq×C, reference_points, input_flatten N×S×C, spatial_shapes (L×2 or L pairs),
    level_start_index L (unused, kept for the official signature), padding_mask N×S bool or None) -> N×Lq×C`.
    `reference_points` is N×Lq×L×2 (x, y in [0, 1]): location = ref + offset / (W_l, H_l); or N×Lq×L×4 boxes
    (cx, cy, w, h): location = centre + offset / P · (w, h) / 2.
    """

    def __init__(self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4,
                 impl: str = "pytorch"):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"MSDeformAttn: d_model {d_model} must be divisible by n_heads {n_heads}")
        if impl not in DEFORM_ATTN_KERNELS:
            raise ValueError(f"MSDeformAttn: unknown implementation {impl!r} (MODEL.ENCODER.DEFORM_ATTN_IMPL); "
                             f"available: {sorted(DEFORM_ATTN_KERNELS)}")
        self.d_model = d_model
        self.n_levels = n_levels
        self.n_heads = n_heads
        self.n_points = n_points
        self.impl = impl
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        """Offsets start on rays in M evenly spaced directions (point i at distance i+1); attention uniform."""
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        directions = torch.stack([angles.cos(), angles.sin()], -1)
        directions = directions / directions.abs().max(-1, keepdim=True).values
        grid = directions.view(self.n_heads, 1, 1, 2).repeat(1, self.n_levels, self.n_points, 1)
        grid = grid * torch.arange(1, self.n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        input_flatten: torch.Tensor,
        spatial_shapes,
        level_start_index: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        bf16_projections: bool = False,
    ) -> torch.Tensor:
        """`bf16_projections`: the value and output projections run under `bf16_gemm_inputs` (CPU)."""
        n, num_queries, _ = query.shape
        num_tokens = input_flatten.shape[1]
        shapes = level_shapes(spatial_shapes)
        if sum(h * w for h, w in shapes) != num_tokens:
            raise ValueError(f"MSDeformAttn: spatial_shapes {shapes} do not add up to the {num_tokens} value tokens")
        with bf16_gemm_inputs(input_flatten.device.type, enabled=bf16_projections):
            value = self.value_proj(input_flatten)
        if padding_mask is not None:
            value = value.masked_fill(padding_mask[..., None], 0.0)
        value = value.view(n, num_tokens, self.n_heads, self.d_model // self.n_heads)
        offsets = self.sampling_offsets(query).view(n, num_queries, self.n_heads, self.n_levels, self.n_points, 2)
        weights = self.attention_weights(query).view(n, num_queries, self.n_heads, self.n_levels * self.n_points)
        weights = weights.softmax(-1).view(n, num_queries, self.n_heads, self.n_levels, self.n_points)
        if reference_points.shape[-1] == 2:
            normaliser = torch.tensor([(w, h) for h, w in shapes], dtype=offsets.dtype, device=offsets.device)
            locations = reference_points[:, :, None, :, None, :] + offsets / normaliser[None, None, None, :, None, :]
        elif reference_points.shape[-1] == 4:
            centres = reference_points[:, :, None, :, None, :2]
            half_sizes = reference_points[:, :, None, :, None, 2:] * 0.5
            locations = centres + offsets / self.n_points * half_sizes
        else:
            raise ValueError(f"MSDeformAttn: reference_points must end in 2 (points) or 4 (boxes), "
                             f"got shape {tuple(reference_points.shape)}")
        output = DEFORM_ATTN_KERNELS[self.impl](value, shapes, locations, weights)
        with bf16_gemm_inputs(output.device.type, enabled=bf16_projections):
            return self.output_proj(output)
