"""Panoptic merge of query masks (docs/official_behaviours.md §9.1), vectorised and chunked.

Official rule, over all queries: keep queries whose max sigmoid class score is > `object_mask_threshold`; their
score becomes the sharpened max_k softmax(sigmoid(logits) / T) when `transform_eval` is on (the filter used the
unsharpened score). Each pixel goes to the kept query with the largest score·sigmoid(mask) (first one on ties).
Walking the kept queries in order, query k gets segment pixels {argmax = k} ∧ {sigmoid(mask_k) ≥ 0.5}; it is
skipped when that set, its won area or its own area (sigmoid ≥ 0.5) is empty, or when won / own area <
`overlap_threshold`. Stuff classes (vocabulary flags) reuse the first segment id of their class; things always
get a new id.

Here the argmax is a running maximum over tiles (a chunk of kept queries over a band of rows), fed in ascending
query order within each band; per pixel only the winner index and whether the winner's sigmoid is ≥ 0.5 are kept,
so the areas come from two `bincount`s and the id map from one lookup table: no full-resolution tensor per query
and no per-query device synchronisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from .pixel_counts import pixel_counts
from .settings import PostprocessSettings

MASK_ON_PROBABILITY = 0.5


@dataclass(frozen=True)
class PanopticSelection:
    """Kept queries of one image, in query order.

    Attributes:
        queries: N int64 (CPU), ascending query indices.
        scores: N float32 (device of the logits), the (sharpened) class scores.
        classes: N int64 (device of the logits), the predicted classes.
    """

    queries: Tensor
    scores: Tensor
    classes: Tensor


def select_panoptic_queries(class_logits: Tensor, settings: PostprocessSettings) -> PanopticSelection:
    """Q×K class logits -> the queries that enter the panoptic merge, with their scores and classes."""
    probs = class_logits.float().sigmoid()
    scores, classes = probs.max(-1)
    keep = scores > settings.object_mask_threshold
    if settings.transform_eval:
        scores, classes = F.softmax(probs / settings.temperature, dim=-1).max(-1)
    kept = keep.nonzero()[:, 0]
    return PanopticSelection(queries=kept.cpu(), scores=scores[kept], classes=classes[kept])


class PanopticAccumulator:
    """Running per-pixel argmax over the kept queries' probability masks, then the segment decisions.

    Args:
        selection: from `select_panoptic_queries`.
        num_queries: Q, the number of queries of the image.
        output_size: (H, W).
    """

    def __init__(self, selection: PanopticSelection, num_queries: int, output_size: tuple[int, int]):
        self.selection = selection
        self.needed_queries = selection.queries
        device = selection.scores.device
        self._position = torch.full((num_queries,), -1, dtype=torch.int64)
        self._position[selection.queries] = torch.arange(len(selection.queries))
        self._next_position = torch.zeros(output_size[0], dtype=torch.int64)  # per output row: next query to feed
        self._best = torch.full(output_size, float("-inf"), dtype=torch.float32, device=device)
        self._winner = torch.zeros(output_size, dtype=torch.int64, device=device)
        self._winner_mask_on = torch.zeros(output_size, dtype=torch.bool, device=device)
        self._own_area = torch.zeros(len(selection.queries), dtype=torch.int64, device=device)

    def update(self, queries: Tensor, rows: slice, mask_logits: Tensor, mask_probs: Tensor) -> None:
        """Feed a tile: `queries` C (CPU int64, ascending, after all earlier chunks of the same rows), output rows
        `rows`, `mask_probs` C×R×W sigmoid masks there."""
        positions = self._position[queries]
        keep = (positions >= 0).nonzero()[:, 0]
        if len(keep) == 0:
            return
        positions = positions[keep]
        expected = self._next_position[rows]
        first, last = positions[0].item(), positions[-1].item()
        if last != first + len(positions) - 1 or not bool((expected == first).all()):
            raise ValueError("panoptic queries must be fed once each, in ascending order, for every row")
        self._next_position[rows] = last + 1
        device = self._best.device
        probs = mask_probs if len(keep) == len(queries) else mask_probs[keep.to(device)]
        positions = positions.to(device)
        prob_masks = self.selection.scores[positions].view(-1, 1, 1) * probs
        chunk_best, chunk_arg = prob_masks.max(0)
        best, winner, winner_mask_on = self._best[rows], self._winner[rows], self._winner_mask_on[rows]
        better = chunk_best > best
        best.copy_(torch.where(better, chunk_best, best))
        winner.copy_(torch.where(better, positions[chunk_arg], winner))
        winner_on = probs.gather(0, chunk_arg[None])[0] >= MASK_ON_PROBABILITY
        winner_mask_on.copy_(torch.where(better, winner_on, winner_mask_on))
        self._own_area[positions] += pixel_counts(probs >= MASK_ON_PROBABILITY)

    def result(self, is_thing: Tensor, overlap_threshold: float) -> tuple[Tensor, list[dict]]:
        """Panoptic id map and segments.

        Args:
            is_thing: K bool, thing flag per class.
        Returns:
            (int32 H×W ids, 0 = void; list of {"id", "isthing", "category_id"} in id order).
        """
        num_kept = len(self.selection.queries)
        if not bool((self._next_position == num_kept).all()):
            fed = int(self._next_position.min())
            raise ValueError(f"panoptic merge fed {fed} of {num_kept} kept queries on some rows")
        if num_kept == 0:
            return torch.zeros(self._best.shape, dtype=torch.int32, device=self._best.device), []
        winners = self._winner.flatten()
        won_area = torch.bincount(winners, minlength=num_kept)
        segment_area = torch.bincount(winners[self._winner_mask_on.flatten()], minlength=num_kept)
        stats = torch.stack([won_area, self._own_area, segment_area, self.selection.classes]).tolist()
        thing_flags = is_thing.tolist()
        segment_of = [0] * num_kept
        segments_info, stuff_segment = [], {}
        for k, (won, own, segment, category) in enumerate(zip(*stats)):
            if won == 0 or own == 0 or segment == 0 or won / own < overlap_threshold:
                continue
            isthing = bool(thing_flags[category])
            if not isthing and category in stuff_segment:
                segment_of[k] = stuff_segment[category]
                continue
            segment_id = len(segments_info) + 1
            if not isthing:
                stuff_segment[category] = segment_id
            segment_of[k] = segment_id
            segments_info.append({"id": segment_id, "isthing": isthing, "category_id": int(category)})
        lookup = torch.tensor(segment_of, dtype=torch.int32, device=self._winner.device)
        panoptic = torch.where(self._winner_mask_on, lookup[self._winner], 0).to(torch.int32)
        return panoptic, segments_info
