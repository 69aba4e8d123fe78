"""DINO-style deformable transformer decoder with iterative box refinement (docs/official_behaviours.md §5.5).

Tensors are batch-first: queries B×Q×C, memory B×S×C (S = sum of H_l·W_l over the L levels, coarsest level first),
reference boxes B×Q×4 as (cx, cy, w, h) in [0, 1] of the padded input. Every layer conditions its queries on a sine
embedding of its reference box, attends to itself (with an optional mask), then to the multi-scale memory through
deformable attention sampled around the box, and ends with an FFN; all post-norm. After each layer the shared box
MLP refines the reference box ("look forward twice": the next layer gets the detached box, the loss path keeps the
un-detached one).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from openseed.modeling.pixel_decoder.ms_deform_attn import MSDeformAttn


class MLP(nn.Module):
    """`num_layers` linear layers with ReLU in between (official name `layers.{i}`)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims_in = [input_dim] + [hidden_dim] * (num_layers - 1)
        dims_out = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims_in, dims_out))

    def forward(self, x: Tensor) -> Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == last else F.relu(layer(x))
        return x


def inverse_sigmoid(x: Tensor, eps: float = 1e-5) -> Tensor:
    """logit(x) with x clamped to [0, 1] and both x and 1-x clamped below by `eps`."""
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


def box_sine_embedding(boxes: Tensor, num_feats: int = 128, temperature: float = 10000.0) -> Tensor:
    """Sine embedding of boxes B×Q×4 (cx, cy, w, h) -> B×Q×4·num_feats, parts ordered (cy, cx, w, h).

    Each coordinate is scaled by 2π and divided by temperature^(2⌊j/2⌋/num_feats); even features take the sine of
    even frequencies, odd features the cosine of odd ones, interleaved.
    """
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=boxes.device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)

    def embed(coord: Tensor) -> Tensor:
        pos = (coord * (2 * math.pi))[..., None] / dim_t
        return torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()), dim=-1).flatten(-2)

    cx, cy, w, h = boxes.unbind(-1)
    return torch.cat((embed(cy), embed(cx), embed(w), embed(h)), dim=-1)


class DeformableDecoderLayer(nn.Module):
    """Post-norm layer: self-attention -> `norm2`, deformable cross-attention -> `norm1`, FFN -> `norm3`."""

    def __init__(self, d_model: int, d_ffn: int, dropout: float, n_levels: int, n_heads: int, n_points: int):
        super().__init__()
        self.cross_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout3 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout4 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(
        self,
        queries: Tensor,
        query_pos: Tensor,
        reference_boxes: Tensor,
        memory: Tensor,
        spatial_shapes: list[tuple[int, int]],
        level_start_index: Tensor,
        self_attn_mask: Tensor | None = None,
    ) -> Tensor:
        """queries/query_pos B×Q×C, reference_boxes B×Q×L×4, memory B×S×C, self_attn_mask Q×Q (True = blocked).

        Runs in float32 with autocast off (as the reference layer): under mixed precision only the heads around the
        decoder layers run in half precision.
        """
        with torch.autocast(device_type=queries.device.type, enabled=False):
            return self._forward_fp32(queries.float(), query_pos.float(), reference_boxes.float(), memory.float(),
                                      spatial_shapes, level_start_index, self_attn_mask)

    def _forward_fp32(self, queries, query_pos, reference_boxes, memory, spatial_shapes, level_start_index,
                      self_attn_mask) -> Tensor:
        q = k = queries + query_pos
        attended = self.self_attn(q, k, queries, attn_mask=self_attn_mask, need_weights=False)[0]
        queries = self.norm2(queries + self.dropout2(attended))

        sampled = self.cross_attn(queries + query_pos, reference_boxes, memory, spatial_shapes, level_start_index)
        queries = self.norm1(queries + self.dropout1(sampled))

        ffn = self.linear2(self.dropout3(F.relu(self.linear1(queries))))
        return self.norm3(queries + self.dropout4(ffn))


class DeformableTransformerDecoder(nn.Module):
    """`num_layers` decoder layers, the positional head `ref_point_head` and the shared final `norm`.

    `bbox_embed` (a ModuleList holding the predictor's shared box MLP once per layer) is attached by the predictor
    after construction, so the xavier initialisation here does not touch it.
    """

    def __init__(
        self,
        *,
        num_layers: int,
        d_model: int,
        d_ffn: int,
        dropout: float,
        n_levels: int,
        n_heads: int,
        n_points: int,
        norm: nn.LayerNorm,
    ):
        super().__init__()
        layer = DeformableDecoderLayer(d_model, d_ffn, dropout, n_levels, n_heads, n_points)
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.norm = norm
        self.ref_point_head = MLP(2 * d_model, d_model, d_model, 2)
        self.n_levels = n_levels
        self.d_model = d_model
        self.bbox_embed: nn.ModuleList | None = None
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for module in self.modules():
            if isinstance(module, MSDeformAttn):
                module._reset_parameters()

    def forward(
        self,
        queries: Tensor,
        memory: Tensor,
        reference_unsigmoid: Tensor,
        spatial_shapes: list[tuple[int, int]],
        level_start_index: Tensor,
        self_attn_mask: Tensor | None = None,
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Run all layers.

        Args:
            queries: B×Q×C decoder input content.
            memory: B×S×C flattened multi-scale features.
            reference_unsigmoid: B×Q×4 initial boxes in logit space.
            spatial_shapes: L pairs (H_l, W_l) (or an L×2 tensor); level_start_index: L.
            self_attn_mask: Q×Q bool, True = attention blocked.

        Returns:
            (normed outputs: one B×Q×C per layer, references: L+1 boxes B×Q×4 in sigmoid space, where
            references[0] is the input box and references[j] the un-detached box refined after layer j).
        """
        if self.bbox_embed is None:
            raise RuntimeError("DeformableTransformerDecoder.bbox_embed must be attached before the forward pass")
        output = queries
        reference = reference_unsigmoid.sigmoid()
        references = [reference]
        normed_outputs = []
        for layer, box_head in zip(self.layers, self.bbox_embed):
            query_pos = self.ref_point_head(box_sine_embedding(reference, self.d_model // 2))
            reference_per_level = reference[:, :, None, :].expand(-1, -1, self.n_levels, -1)
            output = layer(output, query_pos, reference_per_level, memory, spatial_shapes, level_start_index,
                           self_attn_mask)
            refined = (box_head(output) + inverse_sigmoid(reference)).sigmoid()
            reference = refined.detach()
            references.append(refined)
            normed_outputs.append(self.norm(output))
        return normed_outputs, references
