"""Instance segmentation and box detection from query outputs (docs/official_behaviours.md §9.3, §9.4).

Over the first `num_foreground_queries` queries: top-k (k = `detections_per_image`) of the flattened sigmoid
class scores (queries × classes; the same query may appear with several classes), restricted to thing classes when
panoptic output is requested too. Boxes come from the box head. Instance masks are mask logits > 0 at the output
resolution; score = class score × mean sigmoid over the mask (ε = 1e-6), or the class score alone with
`focus_on_box`. Detection has no masks: score = class score.

Only the selected queries' masks are resized, each once even when selected with several classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from detectron2.structures import Boxes, Instances
from torch import Tensor

from .geometry import ImageGeometry, boxes_to_output_pixels
from .pixel_counts import pixel_counts
from .settings import PostprocessSettings

MASK_SCORE_EPS = 1e-6


@dataclass(frozen=True)
class InstanceSelection:
    """Top-k (query, class) entries of one image, in the order `torch.topk(sorted=False)` returns them.

    Attributes:
        queries: N int64 (CPU), query index per entry.
        scores: N float32 (device), sigmoid class scores.
        classes: N int64 (device), class per entry.
    """

    queries: Tensor
    scores: Tensor
    classes: Tensor


def select_instances(
    class_logits: Tensor, is_thing: Tensor, settings: PostprocessSettings, things_only: bool
) -> InstanceSelection:
    """Q×K class logits -> top-k entries over the foreground queries (thing classes only if `things_only`)."""
    num_classes = class_logits.shape[1]
    foreground = class_logits[: settings.num_foreground_queries].float().sigmoid().flatten()
    scores, flat_indices = foreground.topk(min(settings.detections_per_image, foreground.numel()), sorted=False)
    classes = flat_indices % num_classes
    queries = flat_indices // num_classes
    if things_only:
        keep = is_thing.to(classes.device)[classes]
        scores, classes, queries = scores[keep], classes[keep], queries[keep]
    return InstanceSelection(queries=queries.cpu(), scores=scores, classes=classes)


class InstanceMaskAccumulator:
    """Binary masks and mask scores of the selected entries, filled tile by tile (a chunk of queries, a band of rows).

    Args:
        selection: from `select_instances`.
        num_queries: Q, the number of queries of the image.
        output_size: (H, W).
    """

    def __init__(self, selection: InstanceSelection, num_queries: int, output_size: tuple[int, int]):
        self.selection = selection
        self.needed_queries, self._unique_of_entry = torch.unique(selection.queries, return_inverse=True)
        self._position = torch.full((num_queries,), -1, dtype=torch.int64)
        self._position[self.needed_queries] = torch.arange(len(self.needed_queries))
        device = selection.scores.device
        self.masks = torch.zeros((len(selection.queries), *output_size), dtype=torch.bool, device=device)
        self._inside_sum = torch.zeros(len(self.needed_queries), dtype=torch.float32, device=device)
        self._area = torch.zeros(len(self.needed_queries), dtype=torch.int64, device=device)
        self._rows_fed = torch.zeros(len(self.needed_queries), dtype=torch.int64)
        self._height = output_size[0]

    def update(self, queries: Tensor, rows: slice, mask_logits: Tensor, mask_probs: Tensor) -> None:
        """Feed a tile: `queries` C (CPU int64) on output rows `rows`, `mask_logits`/`mask_probs` C×R×W there."""
        unique_positions = self._position[queries]
        members = (unique_positions >= 0).nonzero()[:, 0]
        if len(members) == 0:
            return
        unique_positions = unique_positions[members]
        self._rows_fed[unique_positions] += rows.stop - rows.start
        device = self.masks.device
        if len(members) < len(queries):
            mask_logits, mask_probs = mask_logits[members.to(device)], mask_probs[members.to(device)]
        binary = mask_logits > 0
        positions_device = unique_positions.to(device)
        self._inside_sum[positions_device] += torch.where(binary, mask_probs, 0.0).flatten(1).sum(1)
        self._area[positions_device] += pixel_counts(binary)
        row_of_unique = torch.full((len(self.needed_queries),), -1, dtype=torch.int64)
        row_of_unique[unique_positions] = torch.arange(len(members))
        row_of_entry = row_of_unique[self._unique_of_entry]
        entries = (row_of_entry >= 0).nonzero()[:, 0]
        # copied in groups no larger than the tile, so entries sharing a query (one query selected with several
        # classes, as with large vocabularies) never materialise an entries × rows × W temporary
        for start in range(0, len(entries), len(members)):
            group = entries[start : start + len(members)]
            self.masks[group.to(device), rows] = binary[row_of_entry[group].to(device)]

    def result(self) -> tuple[Tensor, Tensor]:
        """(N×H×W bool masks, N float32 mask scores = mean sigmoid inside the mask) per entry."""
        if not bool((self._rows_fed == self._height).all()):
            raise ValueError("instance masks: some selected queries were not fed exactly once on every row")
        mask_scores = self._inside_sum / (self._area.to(torch.float32) + MASK_SCORE_EPS)
        return self.masks, mask_scores[self._unique_of_entry.to(mask_scores.device)]


def build_instances(
    selection: InstanceSelection,
    boxes: Tensor,
    geometry: ImageGeometry,
    settings: PostprocessSettings,
    masks: tuple[Tensor, Tensor] | None,
) -> Instances:
    """Detectron2 `Instances` at the output size.

    Args:
        boxes: Q×4 normalised (cx, cy, w, h) boxes of the image.
        masks: `InstanceMaskAccumulator.result()` for instance segmentation, None for detection.
    Returns:
        `Instances` with `pred_boxes` (`Boxes`, xyxy output pixels), `scores`, `pred_classes` and, with masks,
        `pred_masks` (N×H×W bool).
    """
    result = Instances(geometry.output_size)
    selected_boxes = boxes[selection.queries.to(boxes.device)].float()
    result.pred_boxes = Boxes(boxes_to_output_pixels(selected_boxes, geometry))
    scores = selection.scores
    if masks is not None:
        result.pred_masks, mask_scores = masks
        if not settings.focus_on_box:
            scores = scores * mask_scores
    result.scores = scores
    result.pred_classes = selection.classes
    return result
