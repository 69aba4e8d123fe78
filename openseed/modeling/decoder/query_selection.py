"""Two-stage, language-guided selection of foreground queries and the learnable background queries (docs/official_behaviours.md §5.2-5.3).

Every token of the flattened encoder memory gets an anchor box; tokens are transformed (`enc_output` +
`enc_output_norm`, owned by the predictor), scored against the vocabulary's text embeddings, and the top-k tokens by
best class score become the foreground queries, with their refined anchors as initial boxes. The best class score
of every token is taken over chunks of tokens (`best_class_logits`), so the S×K logits of a large vocabulary
(20k tokens × 1,203 LVIS names at 800×1216) never exist at once; the selection is not differentiable, so no graph is
kept for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from openseed.modeling.pixel_decoder.level_shapes import level_shapes, level_start_index

ANCHOR_BASE_SIZE = 0.05
ANCHOR_VALID_RANGE = (0.01, 0.99)
SCORE_CHUNK_ELEMENTS = 1 << 22  # token × class logits computed at once by `best_class_logits`


def flatten_memory(multi_scale_features: list[Tensor]) -> tuple[Tensor, list[tuple[int, int]], Tensor]:
    """Flatten L maps (given high -> low resolution, each B×C×H_l×W_l) coarsest first.

    Returns:
        memory B×S×C, spatial_shapes: L pairs (H_l, W_l) in memory order, level_start_index L int64.
    """
    ordered = list(reversed(multi_scale_features))
    memory = torch.cat([f.flatten(2).transpose(1, 2) for f in ordered], dim=1)
    shapes = [(f.shape[-2], f.shape[-1]) for f in ordered]
    return memory, shapes, level_start_index(shapes, memory.device)


def encoder_proposals(memory: Tensor, spatial_shapes) -> tuple[Tensor, Tensor, Tensor]:
    """Anchor box per memory token and the validity of each anchor.

    Level l (memory order, l = 0 coarsest) gets anchors centred on its pixels, ((x+0.5)/W_l, (y+0.5)/H_l), of width
    and height 0.05·2^l. An anchor is valid iff all four coordinates lie strictly inside (0.01, 0.99).

    Args:
        memory: B×S×C flattened features; spatial_shapes: L×2 tensor or L pairs (H_l, W_l).

    Returns:
        masked_memory B×S×C (invalid tokens zeroed), proposals B×S×4 in logit space (+inf where invalid),
        valid B×S bool.
    """
    batch = memory.shape[0]
    anchors = []
    for level, (height, width) in enumerate(level_shapes(spatial_shapes)):
        ys = (torch.arange(height, dtype=torch.float32, device=memory.device) + 0.5) / height
        xs = (torch.arange(width, dtype=torch.float32, device=memory.device) + 0.5) / width
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        centres = torch.stack((grid_x, grid_y), dim=-1).reshape(-1, 2)
        sizes = torch.full_like(centres, ANCHOR_BASE_SIZE * (2.0**level))
        anchors.append(torch.cat((centres, sizes), dim=-1))
    anchors = torch.cat(anchors, dim=0)[None].expand(batch, -1, -1)
    low, high = ANCHOR_VALID_RANGE
    valid = ((anchors > low) & (anchors < high)).all(-1)
    proposals = torch.log(anchors / (1 - anchors)).masked_fill(~valid[..., None], float("inf"))
    masked_memory = memory.masked_fill(~valid[..., None], 0.0)
    return masked_memory, proposals, valid


@dataclass
class SelectedQueries:
    """Top-k tokens: content B×k×C and boxes in logit space B×k×4 (both carry gradient)."""

    content: Tensor
    boxes_unsigmoid: Tensor


@torch.no_grad()
def best_class_logits(tokens: Tensor, class_embed: Tensor, text_embeddings: Tensor,
                      similarity: Callable[[Tensor, Tensor], Tensor],
                      max_elements: int = SCORE_CHUNK_ELEMENTS) -> Tensor:
    """Best class logit of every token, without gradient.

    Args:
        tokens: B×S×C transformed memory; class_embed: C×D projection to the text space.
        text_embeddings: K×D.
        similarity: (B×s×D, K×D) -> B×s×K class logits (`LanguageEncoder.similarity`, row-wise).
        max_elements: tokens are scored in chunks of at most this many B·s·K logits (in one piece while
            `torch.export` traces, so that the graph does not depend on the token count).
    Returns:
        B×S scores, max over the K classes.
    """
    projected_tokens = tokens @ class_embed
    batch, num_tokens, _ = projected_tokens.shape
    rows = max(1, max_elements // max(1, batch * len(text_embeddings)))
    if torch.compiler.is_exporting():
        return similarity(projected_tokens, text_embeddings).max(-1).values
    chunks = [similarity(projected_tokens[:, start : start + rows], text_embeddings).max(-1).values
              for start in range(0, num_tokens, rows)]
    return torch.cat(chunks, dim=1)


def select_top_tokens(tokens: Tensor, token_boxes_unsigmoid: Tensor, token_scores: Tensor, valid: Tensor,
                      k: int) -> SelectedQueries:
    """Pick the k tokens with the highest best-class logit (invalid tokens score -inf).

    Args:
        tokens: B×S×C transformed memory; token_boxes_unsigmoid: B×S×4; token_scores: B×S best class logits
        (`best_class_logits`); valid: B×S.
    """
    if k > tokens.shape[1]:
        raise ValueError(f"cannot select {k} queries from {tokens.shape[1]} encoder tokens; the input is too small")
    scores = token_scores.masked_fill(~valid, float("-inf"))
    indices = torch.topk(scores, k, dim=1).indices
    content = torch.gather(tokens, 1, indices[..., None].expand(-1, -1, tokens.shape[-1]))
    boxes = torch.gather(token_boxes_unsigmoid, 1, indices[..., None].expand(-1, -1, 4))
    return SelectedQueries(content, boxes)


def background_queries(query_feat: Tensor, query_embed: Tensor, batch_size: int) -> SelectedQueries:
    """The learnable background queries (content N×C, logit-space boxes N×4) repeated over the batch."""
    return SelectedQueries(query_feat[None].expand(batch_size, -1, -1), query_embed[None].expand(batch_size, -1, -1))
