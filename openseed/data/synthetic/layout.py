"""Which synthetic sets exist, their categories and where their files live (shared by generator and registration).

Layout under the root (`$DETECTRON2_DATASETS/synthetic` by default), one folder per set:

    <group>/<split>/images/000000.jpg           RGB images
    <group>/<split>/panoptic/000000.png         COCO panoptic PNGs (id = R + 256 G + 256² B)   [panoptic sets]
    <group>/<split>/semantic/000000.png         contiguous class index per pixel, 255 = void   [panoptic sets]
    <group>/<split>/panoptic.json               COCO panoptic json                             [panoptic sets]
    <group>/<split>/instances.json              COCO instances json (RLE masks) or detection json (boxes only)
    <group>/<split>/instances_masks.json        the box-only val set's masks, for mask AP       [boxes/val]
    <group>/<split>/lvis.json                   LVIS-format json (polygons, frequency r/c/f)   [lvis/val]
    manifest.json                               seed and sizes; written last, marks a complete generation
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .classes import (
    ALL_THINGS,
    BOX_THINGS,
    PANOPTIC_THINGS,
    SHAPES,
    STUFF,
    STUFF_NAMES,
    ZEROSHOT_THINGS,
    ThingClass,
)

KINDS = ("panoptic", "detection", "instances", "lvis")
STUFF_ID_OFFSET = 100  # stuff category ids are 101.. (COCO-like: not contiguous with thing ids)


@dataclass(frozen=True)
class SyntheticSet:
    """One generated split.

    `things` is the pool of shapes drawn in the images; `label_by` says whether a drawn shape's category is its full
    name ("red circle") or its shape only ("circle", ODinW-like). `kind` selects the annotation files; `scene` the
    renderer: "bands" (`drawing.render_scene`) or "amorphous" (`discrepancy.render_discrepancy_scene`).
    """

    key: str
    group: str
    split: str
    kind: str
    things: tuple[ThingClass, ...]
    objects_per_image: tuple[int, int]
    sizes: tuple[int, ...] = tuple(range(128, 257, 16))
    label_by: str = "name"
    with_stuff: bool = False
    interleave_stuff: bool = False
    write_mask_json: bool = False
    scene: str = "bands"

    @property
    def folder(self) -> str:
        return f"{self.group}/{self.split}"

    def thing_label(self, thing: ThingClass) -> str:
        return thing.shape if self.label_by == "shape" else thing.name

    def categories(self) -> list[dict]:
        """Json categories in contiguous-id order: [{"id", "name", "isthing", "color"}]."""
        labels = list(dict.fromkeys(self.thing_label(t) for t in self.things))
        if self.label_by == "shape":
            labels = [s for s in SHAPES if s in labels]
        things = [{"id": i + 1, "name": n, "isthing": 1, "color": _thing_colour(self, n)} for i, n in enumerate(labels)]
        if not self.with_stuff:
            return things
        stuff = [
            {"id": STUFF_ID_OFFSET + i + 1, "name": n, "isthing": 0, "color": list(STUFF[n])}
            for i, n in enumerate(STUFF_NAMES)
        ]
        if not self.interleave_stuff:
            return things + stuff
        merged = []
        for i in range(max(len(things), len(stuff))):
            merged += stuff[i : i + 1] + things[i : i + 1]
        return merged


def _thing_colour(spec: SyntheticSet, label: str) -> list[int]:
    matches = [t.rgb for t in spec.things if spec.thing_label(t) == label]
    return list(matches[0]) if spec.label_by == "name" else [128, 128, 128]


def synthetic_sets(num_train: int = 300, num_val: int = 50) -> tuple[tuple[SyntheticSet, int], ...]:
    """Every synthetic set with its number of images."""
    return (
        (SyntheticSet("panoptic_train", "panoptic", "train", "panoptic", PANOPTIC_THINGS, (1, 3), with_stuff=True),
         num_train),
        (SyntheticSet("panoptic_val", "panoptic", "val", "panoptic", PANOPTIC_THINGS, (1, 4), with_stuff=True),
         num_val),
        (SyntheticSet("boxes_train", "boxes", "train", "detection", BOX_THINGS, (1, 3)), num_train),
        (SyntheticSet("boxes_val", "boxes", "val", "detection", BOX_THINGS, (1, 4), write_mask_json=True), num_val),
        (SyntheticSet("zeroshot_val", "zeroshot", "val", "instances", ZEROSHOT_THINGS, (1, 4)), num_val),
        (SyntheticSet("ade_val", "ade", "val", "panoptic", PANOPTIC_THINGS + BOX_THINGS, (2, 5),
                      sizes=tuple(range(192, 321, 32)), with_stuff=True, interleave_stuff=True), num_val),
        (SyntheticSet("lvis_val", "lvis", "val", "lvis", ALL_THINGS, (1, 4)), num_val),
        (SyntheticSet("odinw_val", "odinw", "val", "detection", ALL_THINGS, (1, 3), label_by="shape"), num_val),
    )


def lvis_frequency(thing_name: str) -> str:
    """LVIS frequency group of a synthetic class: panoptic things 'f', box-only 'c', zero-shot 'r' (rare)."""
    if thing_name in {t.name for t in PANOPTIC_THINGS}:
        return "f"
    return "c" if thing_name in {t.name for t in BOX_THINGS} else "r"


@dataclass(frozen=True)
class SetPaths:
    image_root: str
    panoptic_root: str
    semantic_root: str
    panoptic_json: str
    instances_json: str
    mask_json: str
    lvis_json: str


def set_paths(root: str, spec: SyntheticSet) -> SetPaths:
    base = os.path.join(root, spec.folder)
    return SetPaths(
        image_root=os.path.join(base, "images"),
        panoptic_root=os.path.join(base, "panoptic"),
        semantic_root=os.path.join(base, "semantic"),
        panoptic_json=os.path.join(base, "panoptic.json"),
        instances_json=os.path.join(base, "instances.json"),
        mask_json=os.path.join(base, "instances_masks.json"),
        lvis_json=os.path.join(base, "lvis.json"),
    )


MANIFEST = "manifest.json"
GENERATOR_VERSION = 1
