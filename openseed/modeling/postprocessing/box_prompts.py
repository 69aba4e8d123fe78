"""Post-processing of box-prompted segmentation (`OpenSeeD.segment_boxes`): one `Instances` entry per prompt box."""

from __future__ import annotations

import torch
from detectron2.structures import Boxes, Instances
from torch import Tensor

from .geometry import ImageGeometry, boxes_to_output_pixels, resize_mask_logits
from .resize_results import resize_instances
from .settings import PostprocessSettings


def box_prompt_instances(pred_logits: Tensor, pred_masks: Tensor, pred_boxes: Tensor, geometry: ImageGeometry,
                         settings: PostprocessSettings, concept_classes: Tensor | None = None) -> Instances:
    """The prompts of one image -> `Instances` of `geometry.output_size`, one per prompt, in prompt order.

    Args:
        pred_logits: N×K class logits of the N prompts.
        pred_masks: N×h×w mask logits at stride 4 of the padded input.
        pred_boxes: N×4 refined boxes (cx, cy, w, h) normalised to the padded input.
        geometry: input, padded and output sizes of the image.
        settings: resolution "network" with an output larger than the input decides the masks at the input size
            and resizes them by nearest neighbour (`resize_results`); max_chunk_elements bounds that resize.
        concept_classes: N class ids (each prompt's concept); None labels each prompt with its best class.
    Returns:
        `pred_masks` (bool N×H×W), `pred_boxes` (xyxy pixels), `scores` (class probability × mean mask probability
        inside the mask) and `pred_classes`.
    """
    output_size = geometry.output_size
    at_network = (settings.resolution == "network"
                  and output_size[0] * output_size[1] > geometry.input_size[0] * geometry.input_size[1])
    if at_network:
        geometry = ImageGeometry(geometry.input_size, geometry.padded_size, geometry.input_size)
    mask_logits = resize_mask_logits(pred_masks, geometry)
    masks = mask_logits > 0
    mask_scores = (mask_logits.sigmoid() * masks).flatten(1).sum(1) / (masks.flatten(1).sum(1) + 1e-6)
    probs = pred_logits.sigmoid().float()
    if concept_classes is not None:
        classes = concept_classes.to(probs.device)
        class_scores = probs.gather(1, classes[:, None])[:, 0]
    else:
        class_scores, classes = probs.max(-1)
    result = Instances(geometry.output_size)  # the network input size when decided there, resized below
    result.pred_masks = masks
    result.pred_boxes = Boxes(boxes_to_output_pixels(pred_boxes.float(), geometry))
    result.scores = class_scores * mask_scores.to(class_scores.device)
    result.pred_classes = classes
    if at_network:
        result = resize_instances(result, output_size, settings.max_chunk_elements)
    return result


def empty_box_prompt_instances(output_size: tuple[int, int], device: torch.device) -> Instances:
    """`Instances` of `output_size` without any prompt (the fields of `box_prompt_instances`, length 0)."""
    result = Instances(output_size)
    result.pred_masks = torch.zeros(0, *output_size, dtype=torch.bool, device=device)
    result.pred_boxes = Boxes(torch.zeros(0, 4, device=device))
    result.scores = torch.zeros(0, device=device)
    result.pred_classes = torch.zeros(0, dtype=torch.long, device=device)
    return result
