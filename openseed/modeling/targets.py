"""Training targets: Detectron2 `Instances` of one image -> the dict the decoder and the criterion consume.

Per image: {"labels": int64[N], "boxes": float[N, 4] (cx, cy, w, h) normalised by the padded batch size,
"masks": float[N, Hpad, Wpad] (task "seg" only, zero outside the image), "is_thing": bool[N]}.
Boxes are normalised by the padded batch tensor size — the frame in which the model predicts boxes at inference
(docs/official_behaviours.md §7.3 [DESIGN], §14 item 28). `boxes_by_image_size=True` (MODEL.DECODER.REFERENCE_TARGET_BOXES_BY_IMAGE_SIZE)
reproduces the reference, which divides by each image's own unpadded size (the same when no padding is added).
"""

from __future__ import annotations

import torch
from detectron2.structures import BitMasks, Instances
from torch import Tensor

from openseed.structures import TRAIN_TASKS, box_xyxy_to_cxcywh
from openseed.vocabulary import Vocabulary


def _mask_tensor(masks) -> Tensor:
    """gt_masks as an N×H×W tensor (BitMasks or a plain tensor)."""
    if isinstance(masks, BitMasks):
        return masks.tensor
    if torch.is_tensor(masks) and masks.dim() == 3:
        return masks
    raise TypeError(f"gt_masks must be BitMasks or an N×H×W tensor, got {type(masks).__name__}")


def instances_to_target(instances: Instances, padded_size: tuple[int, int], task: str, vocabulary: Vocabulary,
                        device: torch.device, boxes_by_image_size: bool = False) -> dict[str, Tensor]:
    """One image's target dict (see the module docstring).

    Args:
        instances: with `gt_classes` (int, contiguous ids of `vocabulary`), `gt_boxes` (`Boxes`, xyxy pixels of the
            image canvas) and, for task "seg", `gt_masks` (BitMasks or N×H×W, H×W ≤ padded size).
        padded_size: (Hpad, Wpad) of the batch tensor.
        task: "seg" or "det".
        boxes_by_image_size: normalise boxes by `instances.image_size` instead of the padded size (reference).
    """
    if not instances.has("gt_classes") or not instances.has("gt_boxes"):
        raise ValueError(f"training instances need gt_classes and gt_boxes, got fields {list(instances.get_fields())}")
    labels = instances.gt_classes.to(device=device, dtype=torch.int64)
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= len(vocabulary)):
        raise ValueError(f"gt_classes {labels.tolist()} outside the vocabulary of {len(vocabulary)} classes")
    pad_h, pad_w = padded_size
    xyxy = instances.gt_boxes.tensor.to(device=device, dtype=torch.float32)
    cxcywh = box_xyxy_to_cxcywh(xyxy)
    frame_h, frame_w = instances.image_size if boxes_by_image_size else padded_size
    scale = torch.tensor([frame_w, frame_h, frame_w, frame_h], dtype=torch.float32, device=device)
    is_thing = torch.as_tensor(vocabulary.is_thing, dtype=torch.bool, device=device)[labels]
    target = {"labels": labels, "boxes": cxcywh / scale, "is_thing": is_thing}
    if task == "seg":
        if not instances.has("gt_masks"):
            raise ValueError("task 'seg' needs gt_masks in the training instances")
        masks = _mask_tensor(instances.gt_masks).to(device)
        height, width = masks.shape[-2:]
        if height > pad_h or width > pad_w:
            raise ValueError(f"gt_masks of size {height}×{width} exceed the padded image {pad_h}×{pad_w}")
        padded = torch.zeros((masks.shape[0], pad_h, pad_w), dtype=torch.float32, device=device)
        padded[:, :height, :width] = masks.float()
        target["masks"] = padded
    return target


def build_targets(instances: list[Instances], padded_size: tuple[int, int], task: str, vocabulary: Vocabulary,
                  device: torch.device, boxes_by_image_size: bool = False) -> list[dict[str, Tensor]]:
    """`instances_to_target` for every image of a batch."""
    if task not in TRAIN_TASKS:
        raise ValueError(f"training task must be 'seg' or 'det', got {task!r}")
    return [instances_to_target(inst, padded_size, task, vocabulary, device, boxes_by_image_size)
            for inst in instances]
