"""Conditioned queries: GT box + GT concept -> query (docs/official_behaviours.md §5.4, §6.3).

One block of conditioned queries is prepended to the matching queries: `num_groups` groups of `group_size` slots.
In every group, image i's boxes occupy slots [0, n_i) in order; the other slots are padding (content 0, box logits 0).
Content = text embedding of the slot's concept mapped by `lang_mapper` (D -> C); position = the box (noised for
denoising groups) in logit space. Attention: matching queries never see conditioned ones, and each group sees only
itself and the matching queries.

Three uses share this: denoising training (⌊DN_NUM / G⌋ noised groups), the noise-free group of Objects365 mask
assistance (one extra group after the denoising groups), and box-prompted segmentation at inference (one
noise-free group; a prompt without a concept has content 0).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from openseed.modeling.decoder.deformable_decoder import inverse_sigmoid
from openseed.structures import box_xyxy_to_cxcywh
from openseed.utils.random_draws import TrainingDraws


@dataclass
class ConditionedQueries:
    """A block of `num_groups`·`group_size` conditioned queries for a batch.

    content: B×P×C; boxes_unsigmoid: B×P×4; valid: B×P bool (False on padding slots); P = num_groups·group_size.
    """

    content: Tensor
    boxes_unsigmoid: Tensor
    valid: Tensor
    num_groups: int
    group_size: int

    @property
    def num_queries(self) -> int:
        return self.num_groups * self.group_size


@dataclass
class BoxPrompts:
    """Boxes to segment, per image padded to G slots.

    boxes: B×G×4 (cx, cy, w, h) normalised by the padded input size; valid: B×G bool;
    text_embeddings: B×G×D embedding of each box's concept, or None for concept-free prompts (content 0).
    """

    boxes: Tensor
    valid: Tensor
    text_embeddings: Tensor | None = None


def noise_boxes(boxes: Tensor, noise_scale: float, uniform: Tensor | None = None) -> Tensor:
    """Uniform box noise: cx, cy move by up to noise_scale·w/2, noise_scale·h/2; w, h by up to noise_scale·w, ·h.

    boxes N×4 (cx, cy, w, h) in [0, 1]; `uniform` N×4 in [0, 1) (default: drawn here); the result is clamped to
    [0, 1].
    """
    if noise_scale <= 0:
        return boxes
    if uniform is None:
        uniform = torch.rand_like(boxes)
    spread = torch.cat((boxes[:, 2:] / 2, boxes[:, 2:]), dim=1)
    noised = boxes + (uniform * 2 - 1.0) * spread * noise_scale
    return noised.clamp(min=0.0, max=1.0)


def attention_mask(num_groups: int, group_size: int, num_matching: int, device: torch.device) -> Tensor:
    """(P+M)×(P+M) bool self-attention mask, True = blocked: rows [0, P) are conditioned queries in groups of
    `group_size`, rows [P, P+M) matching queries. Matching rows block all conditioned columns; a group's rows block
    the other groups' columns."""
    total = num_groups * group_size
    group_of = torch.arange(total, device=device) // group_size
    mask = torch.zeros(total + num_matching, total + num_matching, dtype=torch.bool, device=device)
    mask[total:, :total] = True
    mask[:total, :total] = group_of[:, None] != group_of[None, :]
    return mask


def _scatter_groups(per_image_content: list[Tensor], per_image_boxes: list[Tensor], num_groups: int,
                    group_size: int, hidden_dim: int, like: Tensor) -> ConditionedQueries:
    """Place image i's rows (num_groups·n_i of them, group-major) at slots g·group_size + j, j < n_i, in the dtype of
    `like` (under autocast the rows can come in a lower precision: CUDA float16 autocast keeps the normalised text
    embeddings in float32 but runs the projection in float16)."""
    batch = len(per_image_boxes)
    total = num_groups * group_size
    content = like.new_zeros(batch, total, hidden_dim)
    boxes = like.new_zeros(batch, total, 4)
    valid = torch.zeros(batch, total, dtype=torch.bool, device=like.device)
    for i, (image_content, image_boxes) in enumerate(zip(per_image_content, per_image_boxes)):
        count = image_boxes.shape[0] // num_groups if num_groups else 0
        if count == 0:
            continue
        slots = (torch.arange(num_groups, device=like.device)[:, None] * group_size
                 + torch.arange(count, device=like.device)[None, :]).reshape(-1)
        content[i, slots] = image_content.to(content.dtype)
        boxes[i, slots] = image_boxes.to(boxes.dtype)
        valid[i, slots] = True
    return ConditionedQueries(content, boxes, valid, num_groups, group_size)


def build_training_queries(
    targets: list[dict[str, Tensor]],
    text_embeddings: Tensor,
    lang_mapper: Tensor,
    *,
    dn_num: int,
    noise_scale: float,
    extra_clean_group: bool = False,
    draws: TrainingDraws | None = None,
) -> ConditionedQueries | None:
    """Denoising groups (and optionally one noise-free group after them) built from the targets.

    Args:
        targets: per image {"labels": int64[n_i], "boxes": float[n_i, 4] normalised (cx, cy, w, h)}.
        text_embeddings: K×D normalised text embeddings of the batch's vocabulary (gradient flows into them).
        lang_mapper: D×C projection from text to query space.
        dn_num: query budget; the number of noised groups is ⌊dn_num / G⌋ with G = max_i n_i (0 when G = 0 or
            G > dn_num, or when dn_num = 0).
        noise_scale: λ of `noise_boxes`.
        extra_clean_group: append one group with the exact boxes (Objects365 mask assistance); present whenever
            G > 0, even without denoising groups.
        draws: source of the box noise, key "dn_noise": one (groups·N)×4 uniform draw for the N boxes of the batch
            (image by image), group-major, as the reference draws it (default: fresh draws).

    Returns:
        the block (num_groups includes the clean group; the clean group is the last one), or None when it would be
        empty.
    """
    counts = [int(t["labels"].shape[0]) for t in targets]
    group_size = max(counts, default=0)
    if group_size == 0:
        return None
    num_noised = dn_num // group_size
    num_groups = num_noised + int(extra_clean_group)
    if num_groups == 0:
        return None
    all_boxes = torch.cat([t["boxes"] for t in targets]).to(text_embeddings.dtype)
    noised = all_boxes.repeat(num_noised, 1)
    if num_noised and noise_scale > 0:
        uniform = (draws or TrainingDraws()).uniform("dn_noise", tuple(noised.shape), noised.device)
        noised = noise_boxes(noised, noise_scale, uniform.to(noised.dtype))
    noised = noised.view(num_noised, len(all_boxes), 4)
    starts = [0] + torch.tensor(counts).cumsum(0).tolist()
    per_image_content, per_image_boxes = [], []
    for image, target in enumerate(targets):
        labels = target["labels"]
        gt_boxes = all_boxes[starts[image]:starts[image + 1]]
        content = text_embeddings[labels] @ lang_mapper
        group_boxes = list(noised[:, starts[image]:starts[image + 1]].unbind(0))
        if extra_clean_group:
            group_boxes.append(gt_boxes)
        per_image_content.append(content.repeat(num_groups, 1))
        per_image_boxes.append(inverse_sigmoid(torch.cat(group_boxes, dim=0)))
    return _scatter_groups(per_image_content, per_image_boxes, num_groups, group_size, lang_mapper.shape[1],
                           text_embeddings)


def build_prompt_queries(prompts: BoxPrompts, lang_mapper: Tensor) -> ConditionedQueries:
    """One noise-free group from box prompts (B×G slots, padding where `prompts.valid` is False)."""
    batch, group_size = prompts.valid.shape
    hidden_dim = lang_mapper.shape[1]
    if prompts.text_embeddings is None:
        content = lang_mapper.new_zeros(batch, group_size, hidden_dim)
    else:
        content = prompts.text_embeddings.to(lang_mapper.dtype) @ lang_mapper
    valid = prompts.valid.to(torch.bool)
    content = content * valid[..., None]
    boxes = torch.where(valid[..., None], inverse_sigmoid(prompts.boxes.to(lang_mapper.dtype)), 0.0)
    return ConditionedQueries(content, boxes, valid, 1, group_size)


def prompt_boxes_from_pixels(
    boxes_per_image,
    output_sizes: list[tuple[int, int]],
    input_sizes: list[tuple[int, int]],
    padded_size: tuple[int, int],
    device: torch.device,
) -> tuple[Tensor, Tensor]:
    """User boxes (xyxy pixels of each output image) -> prompt boxes normalised to the padded input.

    Boxes are clipped to the output image (with a warning when any coordinate moved), scaled to the network input
    size (input/output per axis), converted to (cx, cy, w, h) and divided by the padded size.

    Args:
        boxes_per_image: per image an N_i×4 array or tensor (x0, y0, x1, y1).
        output_sizes, input_sizes: per image (height, width); padded_size: (Hpad, Wpad).

    Returns:
        boxes B×G×4 (zeros on padding) and valid B×G bool, G = max N_i.
    """
    normalised = []
    for index, (raw, (out_h, out_w), (in_h, in_w)) in enumerate(zip(boxes_per_image, output_sizes, input_sizes)):
        boxes = torch.as_tensor(raw, dtype=torch.float32).reshape(-1, 4) if len(raw) else torch.zeros(0, 4)
        clipped = torch.stack((boxes[:, 0].clamp(0, out_w), boxes[:, 1].clamp(0, out_h),
                               boxes[:, 2].clamp(0, out_w), boxes[:, 3].clamp(0, out_h)), dim=-1)
        moved = (clipped != boxes).any(-1)
        if moved.any():
            warnings.warn(f"image {index}: boxes {moved.nonzero()[:, 0].tolist()} reach outside the "
                          f"{out_h}×{out_w} image and were clipped to it", stacklevel=3)
        empty = (clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1])
        if empty.any():
            raise ValueError(f"image {index}: boxes {empty.nonzero()[:, 0].tolist()} have no area inside the "
                             f"{out_h}×{out_w} image (expected x0 < x1, y0 < y1 in pixels)")
        scaled = clipped * torch.tensor([in_w / out_w, in_h / out_h] * 2)
        cxcywh = box_xyxy_to_cxcywh(scaled)
        normalised.append(cxcywh / torch.tensor([padded_size[1], padded_size[0]] * 2, dtype=torch.float32))
    group_size = max((len(b) for b in normalised), default=0)
    boxes = torch.zeros(len(normalised), group_size, 4)
    valid = torch.zeros(len(normalised), group_size, dtype=torch.bool)
    for index, image_boxes in enumerate(normalised):
        boxes[index, : len(image_boxes)] = image_boxes
        valid[index, : len(image_boxes)] = True
    return boxes.to(device), valid.to(device)
