"""Final results at the network's input size -> the output size (post-processing resolution "network").

Only the final outputs are resized, in chunks bounded by `PostprocessSettings.max_chunk_elements` output pixels:
the panoptic id map and the instance masks by nearest neighbour (output pixel centre -> the source pixel containing
it), the semantic scores bilinearly (antialiased when shrinking), the boxes by the per-axis scale. Memory is the
outputs themselves plus one chunk, whatever the output size.
"""

from __future__ import annotations

import torch
from detectron2.structures import Boxes, Instances
from torch import Tensor
from torch.nn import functional as F


def nearest_indices(source_length: int, target_length: int, device=None) -> Tensor:
    """target_length int64 source indices: target pixel i covers source pixel ⌊(i + 0.5)·source/target⌋."""
    positions = (torch.arange(target_length, dtype=torch.float64, device=device) + 0.5) * (source_length / target_length)
    return positions.floor().to(torch.int64).clamp_(max=source_length - 1)


def resize_label_map(labels: Tensor, output_size: tuple[int, int]) -> Tensor:
    """h×w map of any dtype -> H×W by nearest neighbour (`nearest_indices` on each axis)."""
    rows = nearest_indices(labels.shape[0], output_size[0], labels.device)
    cols = nearest_indices(labels.shape[1], output_size[1], labels.device)
    return labels[rows][:, cols]


def resize_panoptic(panoptic: tuple[Tensor, list[dict]], output_size: tuple[int, int]) -> tuple[Tensor, list[dict]]:
    """(int32 h×w ids, segments_info) -> the map at `output_size`; segments no output pixel shows are dropped."""
    ids, segments_info = panoptic
    resized = resize_label_map(ids, output_size)
    rows = nearest_indices(ids.shape[0], output_size[0], ids.device).unique()
    cols = nearest_indices(ids.shape[1], output_size[1], ids.device).unique()
    present = set(ids[rows][:, cols].unique().tolist())
    return resized, [segment for segment in segments_info if segment["id"] in present]


def resize_semantic(sem_seg: Tensor, output_size: tuple[int, int], max_chunk_elements: int) -> Tensor:
    """K×h×w float32 class scores -> K×H×W, bilinear, in chunks of classes of at most ~`max_chunk_elements` pixels."""
    num_classes = sem_seg.shape[0]
    resized = sem_seg.new_empty((num_classes, *output_size))
    chunk = max(1, max_chunk_elements // (output_size[0] * output_size[1]))
    for start in range(0, num_classes, chunk):
        resized[start : start + chunk] = F.interpolate(sem_seg[None, start : start + chunk], size=output_size,
                                                       mode="bilinear", align_corners=False, antialias=True)[0]
    return resized


def resize_instances(instances: Instances, output_size: tuple[int, int], max_chunk_elements: int) -> Instances:
    """`Instances` of size h×w -> size H×W: boxes scaled per axis, `pred_masks` (if any) resized by nearest."""
    height, width = instances.image_size
    result = Instances(output_size)
    scale = torch.tensor([output_size[1] / width, output_size[0] / height] * 2, dtype=torch.float32)
    result.pred_boxes = Boxes(instances.pred_boxes.tensor * scale.to(instances.pred_boxes.tensor))
    result.scores = instances.scores
    result.pred_classes = instances.pred_classes
    if instances.has("pred_masks"):
        masks = instances.pred_masks
        resized = masks.new_empty((len(masks), *output_size))
        rows = nearest_indices(height, output_size[0], masks.device)
        cols = nearest_indices(width, output_size[1], masks.device)
        chunk = max(1, max_chunk_elements // (output_size[0] * output_size[1]))
        for start in range(0, len(masks), chunk):
            resized[start : start + chunk] = masks[start : start + chunk][:, rows][:, :, cols]
        result.pred_masks = resized
    return result


def resize_results(results: dict, output_size: tuple[int, int], max_chunk_elements: int) -> dict:
    """`postprocess` results at the network's input size -> the same keys at `output_size`."""
    resized = {}
    if "sem_seg" in results:
        resized["sem_seg"] = resize_semantic(results["sem_seg"], output_size, max_chunk_elements)
    if "panoptic_seg" in results:
        resized["panoptic_seg"] = resize_panoptic(results["panoptic_seg"], output_size)
    if "instances" in results:
        resized["instances"] = resize_instances(results["instances"], output_size, max_chunk_elements)
    return resized
