"""Names and shapes shared across the package: the task literals, box formats, and the decoder's outputs.

Two kinds of task:
- training tasks (`TRAIN_TASKS`): "seg" (masks, boxes and classes from a segmentation dataset) and "det" (boxes and
  classes only, e.g. Objects365); they choose the targets, the queries the decoder keeps and the loss terms;
- output tasks (`OUTPUT_TASKS`): what evaluation and inference return: "panoptic", "instance", "semantic",
  "detection".

Boxes are tensors whose last dimension holds 4 numbers, (cx, cy, w, h) or (x0, y0, x1, y1); inside the model they are
normalised to the padded input, outside it they are pixels.
"""

from __future__ import annotations

from typing import Literal, TypedDict

import torch
from torch import Tensor

TrainTask = Literal["seg", "det"]
TRAIN_TASKS: tuple[TrainTask, ...] = ("seg", "det")
OutputTask = Literal["panoptic", "instance", "semantic", "detection"]
OUTPUT_TASKS: tuple[OutputTask, ...] = ("panoptic", "instance", "semantic", "detection")


def box_cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """(..., 4) cx, cy, w, h -> (..., 4) x0, y0, x1, y1."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def box_xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """(..., 4) x0, y0, x1, y1 -> (..., 4) cx, cy, w, h."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dim=-1)


class PredictionSet(TypedDict, total=False):
    """One set of predictions for B images and Q queries against a vocabulary of K classes.

    pred_logits: B×Q×K class logits (exp(logit_scale) · cosine similarity to the K text embeddings).
    pred_boxes: B×Q×4 boxes (cx, cy, w, h) in [0, 1], normalised to the padded input.
    pred_masks: B×Q×h×w mask logits at the mask features' resolution (stride 4); absent where not computed.
    valid: B×Q bool, which queries of a conditioned group (mask assistance, box prompts) stand for a real box.
    """

    pred_logits: Tensor
    pred_boxes: Tensor
    pred_masks: Tensor
    valid: Tensor


class DenoisingMeta(TypedDict):
    """Layout of the denoising queries: `num_groups` groups of `group_size` queries each."""

    num_groups: int
    group_size: int


class MaskAssistOutputs(TypedDict):
    """Masks of the mask-assistance group (det training with O365 mask assistance): pred_masks B×G×h×w logits,
    valid B×G bool."""

    pred_masks: Tensor
    valid: Tensor


class DecoderOutputs(PredictionSet, total=False):
    """What `OpenSeeDDecoder.forward` returns: the last layer's `PredictionSet` of the matching queries
    (Q = foreground, + background for "seg"), and

    aux_outputs: DEC_LAYERS sets (the initial prediction, then layers 1..DEC_LAYERS-1), masks only in training.
    interm_outputs: the encoder proposals (all matching queries), masks only in training.
    dn_outputs: the same structure (top level + aux_outputs) for the denoising queries, or None.
    dn_meta: their layout, or None.
    num_foreground: the number of foreground queries (NUM_OBJECT_QUERIES in training, the test number otherwise).
    mask_assist: present in det training with O365 mask assistance.
    prompt_outputs: present when box prompts are given: the last layer's set for the prompt group (with `valid`).
    """

    aux_outputs: list[PredictionSet]
    interm_outputs: PredictionSet
    dn_outputs: DecoderOutputs | None
    dn_meta: DenoisingMeta | None
    num_foreground: int
    mask_assist: MaskAssistOutputs
    prompt_outputs: PredictionSet
