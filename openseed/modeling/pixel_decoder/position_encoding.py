"""2-D sine position embedding of a feature map (DETR style, normalised coordinates), docs/official_behaviours.md §3 item 3.

For a map of size H×W, position (i, j) (0-based) has coordinates y = (i+1)/(H+ε)·2π and x = (j+1)/(W+ε)·2π
(ε = 1e-6, the cumulative count of unmasked pixels divided by the total, as in the reference). Each coordinate is
encoded with F frequencies t_k = temperature^(2⌊k/2⌋/F): features k even = sin(c/t_k), k odd = cos(c/t_k).
Output channels: [y-part (F), x-part (F)], so 2F in total. No padding masks: the reference never passes any.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class PositionEmbeddingSine(nn.Module):
    """`forward(x B×C×H×W) -> B×(2·num_pos_feats)×H×W` in x's dtype and device (only x's shape is used)."""

    def __init__(self, num_pos_feats: int = 128, temperature: float = 10000.0, scale: float = 2 * math.pi,
                 eps: float = 1e-6):
        super().__init__()
        if num_pos_feats % 2:
            raise ValueError(f"PositionEmbeddingSine: num_pos_feats must be even, got {num_pos_feats}")
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.scale = scale
        self.eps = eps

    def _encode(self, coords: torch.Tensor, frequencies: torch.Tensor) -> torch.Tensor:
        """coords (n,) -> n×F with interleaved sin/cos pairs."""
        angles = coords[:, None] / frequencies
        return torch.stack((angles[:, 0::2].sin(), angles[:, 1::2].cos()), dim=2).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        dtype, device = x.dtype, x.device
        index = torch.arange(self.num_pos_feats, dtype=dtype, device=device)
        frequencies = self.temperature ** (2 * (index // 2) / self.num_pos_feats)
        ys = torch.arange(1, height + 1, dtype=dtype, device=device) / (height + self.eps) * self.scale
        xs = torch.arange(1, width + 1, dtype=dtype, device=device) / (width + self.eps) * self.scale
        pos_y = self._encode(ys, frequencies)[:, None, :].expand(height, width, -1)
        pos_x = self._encode(xs, frequencies)[None, :, :].expand(height, width, -1)
        pos = torch.cat((pos_y, pos_x), dim=2).permute(2, 0, 1)
        return pos.unsqueeze(0).expand(batch, -1, -1, -1)
