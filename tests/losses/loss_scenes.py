"""Synthetic training scenes built in memory: coloured shapes (things) on two stuff regions.

Class names follow the pattern "<colour> <shape>" for things and a stuff name ("sky", "grass", "water", "sand"),
as in the registered synthetic vocabularies, so an image always shows what its class names say.
Each scene is a training input dict: {"image": uint8 3×S×S, "instances": Instances(gt_classes, gt_boxes xyxy pixels,
gt_masks bool N×S×S (visible parts, `with_masks` only)), "height", "width"}, plus "gt_masks"/"gt_classes" kept
for evaluation even when the instances are box-only.
"""

from __future__ import annotations

import torch
from detectron2.structures import Boxes, Instances

from openseed.vocabulary import Vocabulary

COLOURS = {"red": (220, 40, 40), "green": (40, 190, 60), "blue": (40, 70, 230), "yellow": (235, 215, 40)}
STUFF_COLOURS = {"sky": (150, 200, 250), "grass": (100, 130, 70), "water": (30, 90, 140), "sand": (215, 190, 140)}


def shape_mask(shape: str, cx: float, cy: float, r: float, size: int) -> torch.Tensor:
    """bool size×size mask of a circle, square, triangle (apex up) or star (a plus sign) of radius r."""
    yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    dx, dy = (xx - cx).abs(), (yy - cy).abs()
    if shape == "circle":
        return dx**2 + dy**2 <= r**2
    if shape == "square":
        return (dx <= r) & (dy <= r)
    if shape == "triangle":
        return (dy <= r) & (dx <= (yy - (cy - r)) / 2)
    if shape == "star":
        return ((dx <= r / 3) & (dy <= r)) | ((dy <= r / 3) & (dx <= r))
    raise ValueError(f"unknown shape {shape!r}")


def make_scene(
    vocabulary: Vocabulary,
    things: list[tuple[str, float, float, float]],
    stuff: tuple[str, str] | None,
    split: int,
    vertical_split: bool,
    size: int = 128,
    with_masks: bool = True,
    noise_seed: int = 0,
) -> dict:
    """One scene: stuff[0] above (or left of) `split`, stuff[1] elsewhere; `things` = (class name, cx, cy, r), drawn
    in order (later ones occlude earlier ones). Objects left without visible pixels are dropped. With `stuff=None`
    the background is drawn as sky/grass but not labelled (box-only vocabularies)."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    first_region = (xx < split) if vertical_split else (yy < split)
    occupied = torch.zeros(size, size, dtype=torch.bool)
    visible = []
    for name, cx, cy, r in reversed(things):
        mask = shape_mask(name.split()[1], cx, cy, r, size) & ~occupied
        occupied |= mask
        visible.insert(0, (name, mask))
    background = [("sky", first_region & ~occupied), ("grass", ~first_region & ~occupied)]
    if stuff is not None:
        visible += [(stuff[0], background[0][1]), (stuff[1], background[1][1])]
    visible = [(n, m) for n, m in visible if m.any()]
    image = torch.zeros(3, size, size)
    for name, mask in background:
        image[:, mask] = torch.tensor(STUFF_COLOURS[name], dtype=torch.float32)[:, None]
    for name, mask in visible:
        colour = STUFF_COLOURS.get(name) or COLOURS[name.split()[0]]
        image[:, mask] = torch.tensor(colour, dtype=torch.float32)[:, None]
    generator = torch.Generator().manual_seed(noise_seed)
    image = (image + 8 * torch.randn(3, size, size, generator=generator)).clamp(0, 255).to(torch.uint8)

    masks = torch.stack([m for _, m in visible])
    classes = torch.tensor([vocabulary.names.index(n) for n, _ in visible])
    ys_any, xs_any = masks.any(2), masks.any(1)
    boxes = [[xs.nonzero().min(), ys.nonzero().min(), xs.nonzero().max() + 1, ys.nonzero().max() + 1]
             for xs, ys in zip(xs_any, ys_any)]
    instances = Instances((size, size))
    instances.gt_classes = classes
    instances.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
    if with_masks:
        instances.gt_masks = masks
    return {"image": image, "instances": instances, "height": size, "width": size,
            "gt_masks": masks, "gt_classes": classes}


def random_scene(
    vocabulary: Vocabulary, thing_names: list[str], generator: torch.Generator, size: int = 128,
    max_things: int = 3, with_masks: bool = True,
) -> dict:
    """A scene with 1..max_things random things of `thing_names` on two random stuff classes of the vocabulary
    (unlabelled sky/grass when the vocabulary has no stuff)."""
    stuff_names = [n for n, t in zip(vocabulary.names, vocabulary.is_thing) if not t]
    noise_seed = int(torch.randint(2**31, (1,), generator=generator))
    count = int(torch.randint(1, max_things + 1, (1,), generator=generator))
    things = []
    for _ in range(count):
        name = thing_names[int(torch.randint(len(thing_names), (1,), generator=generator))]
        r = float(10 + 12 * torch.rand(1, generator=generator))
        cx, cy = (r + (size - 2 * r) * torch.rand(2, generator=generator)).tolist()
        things.append((name, cx, cy, r))
    stuff = None
    if len(stuff_names) >= 2:
        pick = torch.randperm(len(stuff_names), generator=generator)[:2].tolist()
        stuff = (stuff_names[pick[0]], stuff_names[pick[1]])
    split = int(torch.randint(size // 4, 3 * size // 4, (1,), generator=generator))
    vertical = bool(torch.randint(2, (1,), generator=generator))
    return make_scene(vocabulary, things, stuff, split, vertical, size, with_masks, noise_seed)
