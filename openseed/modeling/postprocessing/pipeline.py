"""`postprocess`: one image's raw query outputs -> Detectron2-format results for the requested tasks (docs/official_behaviours.md §9)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from .geometry import ImageGeometry, resize_mask_logits, resize_mask_logits_rows, row_band_factor
from .instance import InstanceMaskAccumulator, build_instances, select_instances
from .panoptic import PanopticAccumulator, select_panoptic_queries
from .resize_results import resize_results
from .semantic import SemanticAccumulator, semantic_class_weights
from .settings import PostprocessSettings, normalize_tasks


@torch.no_grad()
def postprocess(
    class_logits: Tensor,
    mask_logits: Tensor | None,
    boxes: Tensor,
    *,
    tasks: str | Iterable[str],
    input_size: Sequence[int],
    padded_size: Sequence[int],
    output_size: Sequence[int],
    is_thing: Tensor | Sequence[bool],
    settings: PostprocessSettings | None = None,
) -> dict:
    """Post-process one image (no autograd graph is recorded).

    With `settings.resolution` "network" and an output larger (in pixels) than the input, the results are computed
    at the input size and only they are resized (`resize_results`); otherwise each needed query's mask is resized to
    the output size first (the official order, exact; already bounded by the input size when the output is smaller).

    Args:
        class_logits: Q×K class logits (all queries: foreground first, then background).
        mask_logits: Q×h×w mask logits at stride 4 of the padded input; may be None when `tasks` is "detection".
        boxes: Q×4 boxes (cx, cy, w, h) normalised to the padded input.
        tasks: a name or several of "panoptic", "instance", "semantic", "detection" ("instance" and "detection"
            exclude each other; with "panoptic" they keep thing classes only).
        input_size: (h, w) after the test resize, before padding.
        padded_size: (h, w) of the padded batch tensor.
        output_size: (height, width) requested (the dataset dict's `height`, `width`).
        is_thing: K thing flags of the vocabulary (e.g. `Vocabulary.is_thing`).
        settings: thresholds (`PostprocessSettings.from_config(cfg)`); defaults = the paper model's eval config.
    Returns:
        dict with, per requested task:
        - "sem_seg": K×H×W float32 (semantic),
        - "panoptic_seg": (int32 H×W ids, 0 = void; list of {"id", "isthing", "category_id"}) (panoptic),
        - "instances": `Instances` of size (H, W) with `pred_boxes` (`Boxes`, xyxy pixels), `scores`, `pred_classes`
          and, for "instance", `pred_masks` (N×H×W bool).
    """
    tasks = normalize_tasks(tasks)
    settings = settings or PostprocessSettings()
    geometry = ImageGeometry(tuple(input_size), tuple(padded_size), tuple(output_size))
    is_thing = torch.as_tensor(is_thing, dtype=torch.bool).cpu()
    _check_shapes(class_logits, mask_logits, boxes, is_thing, tasks)
    if settings.resolution == "network" and _area(geometry.output_size) > _area(geometry.input_size):
        network = ImageGeometry(geometry.input_size, geometry.padded_size, geometry.input_size)
        results = _postprocess_at(class_logits, mask_logits, boxes, tasks, network, is_thing, settings)
        return resize_results(results, geometry.output_size, settings.max_chunk_elements)
    return _postprocess_at(class_logits, mask_logits, boxes, tasks, geometry, is_thing, settings)


def _postprocess_at(class_logits: Tensor, mask_logits: Tensor | None, boxes: Tensor, tasks: frozenset[str],
                    geometry: ImageGeometry, is_thing: Tensor, settings: PostprocessSettings) -> dict:
    """`postprocess` with every needed query's mask resized to `geometry.output_size` (validated arguments)."""
    num_queries = class_logits.shape[0]

    accumulators = {}
    if "semantic" in tasks:
        accumulators["semantic"] = SemanticAccumulator(
            semantic_class_weights(class_logits, settings), geometry.output_size
        )
    if "panoptic" in tasks:
        selection = select_panoptic_queries(class_logits, settings)
        accumulators["panoptic"] = PanopticAccumulator(selection, num_queries, geometry.output_size)
    if "instance" in tasks or "detection" in tasks:
        instance_selection = select_instances(class_logits, is_thing, settings, things_only="panoptic" in tasks)
    if "instance" in tasks:
        accumulators["instance"] = InstanceMaskAccumulator(instance_selection, num_queries, geometry.output_size)
    if accumulators:
        _feed_resized_masks(mask_logits, geometry, list(accumulators.values()), settings)

    results = {}
    if "semantic" in tasks:
        results["sem_seg"] = accumulators["semantic"].result()
    if "panoptic" in tasks:
        results["panoptic_seg"] = accumulators["panoptic"].result(is_thing, settings.overlap_threshold)
    if "instance" in tasks or "detection" in tasks:
        masks = accumulators["instance"].result() if "instance" in tasks else None
        results["instances"] = build_instances(instance_selection, boxes, geometry, settings, masks)
    return results


def _area(size: tuple[int, int]) -> int:
    return size[0] * size[1]


def _feed_resized_masks(mask_logits: Tensor, geometry: ImageGeometry, accumulators: list,
                        settings: PostprocessSettings) -> None:
    """Resize every query some accumulator needs, once per output pixel, in tiles, and hand each tile to all of them.

    Tiles are bands of rows over all needed queries where `row_band_factor` allows it (identity final resize: each
    accumulator then touches its outputs once per band; at most `settings.max_band_elements` pixels), else chunks of
    queries over the whole image (at most `settings.max_chunk_elements` padded-size pixels).
    """
    needed = torch.unique(torch.cat([acc.needed_queries for acc in accumulators]))
    if len(needed) == 0:
        return
    factor = row_band_factor(mask_logits.shape[1], geometry)
    if factor is None:
        chunk_size = max(1, settings.max_chunk_elements // (geometry.padded_size[0] * geometry.padded_size[1]))
        for start in range(0, len(needed), chunk_size):
            queries = needed[start : start + chunk_size]
            logits = resize_mask_logits(mask_logits[queries.to(mask_logits.device)], geometry)
            _feed(accumulators, queries, slice(0, geometry.output_size[0]), logits)
        return
    band = factor * max(1, settings.max_band_elements // (len(needed) * factor * geometry.padded_size[1]) - 1)
    queries = None if len(needed) == mask_logits.shape[0] else needed.to(mask_logits.device)
    height = geometry.output_size[0]
    starts = [0, *range(factor // 2 + band, height, band)]  # bands from f/2 (mod f): one neighbour row each
    for first, last in zip(starts, [*starts[1:], height]):
        rows = slice(first, last)
        _feed(accumulators, needed, rows, resize_mask_logits_rows(mask_logits, geometry, factor, rows, queries))


def _feed(accumulators: list, queries: Tensor, rows: slice, logits: Tensor) -> None:
    probs = logits.sigmoid()
    for accumulator in accumulators:
        accumulator.update(queries, rows, logits, probs)


def _check_shapes(class_logits, mask_logits, boxes, is_thing, tasks) -> None:
    if class_logits.dim() != 2:
        raise ValueError(f"class_logits must be Q×K, got shape {tuple(class_logits.shape)}")
    num_queries, num_classes = class_logits.shape
    if boxes.shape != (num_queries, 4):
        raise ValueError(f"boxes must be {num_queries}×4 (one per query), got shape {tuple(boxes.shape)}")
    if is_thing.shape != (num_classes,):
        raise ValueError(f"is_thing must have one flag per class ({num_classes}), got shape {tuple(is_thing.shape)}")
    if tasks - {"detection"}:
        if mask_logits is None:
            raise ValueError(f"tasks {sorted(tasks)} need mask logits, got None")
        if mask_logits.dim() != 3 or mask_logits.shape[0] != num_queries:
            raise ValueError(f"mask_logits must be {num_queries}×h×w, got shape {tuple(mask_logits.shape)}")
