"""Hand-built decoder outputs and targets in the layout of docs/architecture.md, for the loss tests."""

from __future__ import annotations

import torch


def random_boxes(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(n, 4) valid normalised (cx, cy, w, h) boxes inside the unit square."""
    wh = 0.05 + 0.4 * torch.rand(n, 2, generator=generator)
    centre = wh / 2 + (1 - wh) * torch.rand(n, 2, generator=generator)
    return torch.cat([centre, wh], dim=1)


def prediction_set(batch: int, queries: int, classes: int, mask_size: int | None, requires_grad: bool = True) -> dict:
    """One prediction set with leaf tensors: logits (B,Q,K), boxes (B,Q,4) in (0,1), masks (B,Q,h,w) or none."""
    out = {
        "pred_logits": torch.randn(batch, queries, classes),
        "pred_boxes": torch.cat([0.2 + 0.6 * torch.rand(batch, queries, 2), 0.05 + 0.3 * torch.rand(batch, queries, 2)], -1),
    }
    if mask_size is not None:
        out["pred_masks"] = 2 * torch.randn(batch, queries, mask_size, mask_size)
    for value in out.values():
        value.requires_grad_(requires_grad)
    return out


def make_outputs(
    batch: int = 2,
    num_foreground: int = 6,
    num_background: int = 4,
    classes: int = 5,
    aux_sets: int = 9,
    task: str = "seg",
    mask_size: int = 8,
    dn_groups: int | None = 2,
    dn_group_size: int = 3,
    det_masks: bool = False,
) -> dict:
    """Outputs of the decoder: `seg` sets have fg+bg queries and masks; `det` sets only fg queries (and masks only
    with `det_masks`); the interm set always has fg+bg queries. `dn_groups=None` means no conditioned queries."""
    with_masks = task == "seg" or det_masks
    decoder_queries = num_foreground + num_background if task == "seg" else num_foreground
    size = mask_size if with_masks else None
    outputs = prediction_set(batch, decoder_queries, classes, size)
    outputs["aux_outputs"] = [prediction_set(batch, decoder_queries, classes, size) for _ in range(aux_sets)]
    outputs["interm_outputs"] = prediction_set(batch, num_foreground + num_background, classes, size)
    if dn_groups is None:
        outputs["dn_outputs"], outputs["dn_meta"] = None, None
    else:
        dn_size = mask_size if task == "seg" else None
        slots = dn_groups * dn_group_size
        outputs["dn_outputs"] = prediction_set(batch, slots, classes, dn_size)
        outputs["dn_outputs"]["aux_outputs"] = [prediction_set(batch, slots, classes, dn_size) for _ in range(aux_sets)]
        outputs["dn_meta"] = {"num_groups": dn_groups, "group_size": dn_group_size}
    outputs["num_foreground"] = num_foreground
    return outputs


def make_targets(
    counts: list[int], classes: int = 5, thing_classes: int = 3, image_size: int = 32, task: str = "seg", seed: int = 0
) -> list[dict]:
    """Per image `counts[i]` objects; classes < `thing_classes` are things; seg targets get box-shaped masks."""
    generator = torch.Generator().manual_seed(seed)
    targets = []
    for count in counts:
        labels = torch.randint(0, classes, (count,), generator=generator)
        boxes = random_boxes(count, generator)
        target = {"labels": labels, "boxes": boxes, "is_thing": labels < thing_classes}
        if task == "seg":
            ys = (torch.arange(image_size) + 0.5) / image_size
            x0, y0 = boxes[:, 0] - boxes[:, 2] / 2, boxes[:, 1] - boxes[:, 3] / 2
            x1, y1 = boxes[:, 0] + boxes[:, 2] / 2, boxes[:, 1] + boxes[:, 3] / 2
            inside_y = (ys[None] >= y0[:, None]) & (ys[None] <= y1[:, None])
            inside_x = (ys[None] >= x0[:, None]) & (ys[None] <= x1[:, None])
            target["masks"] = (inside_y[:, :, None] & inside_x[:, None, :]).float()
        targets.append(target)
    return targets


def all_prediction_tensors(outputs: dict) -> list[torch.Tensor]:
    """Every leaf prediction tensor of `outputs` (all sets, interm and DN)."""
    sets = [outputs, *outputs["aux_outputs"], outputs["interm_outputs"]]
    if outputs.get("dn_outputs") is not None:
        sets += [outputs["dn_outputs"], *outputs["dn_outputs"]["aux_outputs"]]
    return [s[k] for s in sets for k in ("pred_logits", "pred_boxes", "pred_masks") if k in s]
