"""The synthetic "custom" dataset: a small COCO instances json with classes of its own, to fine-tune on.

    python -m openseed.data.synthetic.custom --root datasets/synthetic_custom [--num-train 120] [--num-val 30]

Its four classes, "orange hexagon", "orange diamond", "purple hexagon", "purple diamond", share no word with the
pre-training vocabulary of `classes.py` (colours red/green/blue/yellow, shapes circle/square/triangle/star): like a
user's own data, the model has never seen these names or shapes. Scenes are drawn as the other synthetic sets (same
stuff backgrounds, non-overlapping shapes), with RLE masks. Layout under `--root`:

    images/train/*.jpg, images/val/*.jpg, annotations/train.json, annotations/val.json, manifest.json

Register it with `DATASETS.CUSTOM` entries (see configs/finetune/synthetic_custom.yaml). Generation is
deterministic and skipped when a complete generation with the same parameters is there (`manifest.json`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..paths import datasets_root
from .drawing import render_scene
from .writers import instance_annotation

CUSTOM_COLOURS: dict[str, tuple[int, int, int]] = {"orange": (250, 130, 20), "purple": (140, 40, 190)}
CUSTOM_SHAPES = ("hexagon", "diamond")
CUSTOM_VERSION = 1
MANIFEST = "manifest.json"
SPLITS = ("train", "val")


@dataclass(frozen=True)
class CustomThing:
    """A class of the custom set; the same interface as `classes.ThingClass` (name, shape, rgb)."""

    colour: str
    shape: str

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"

    @property
    def rgb(self) -> tuple[int, int, int]:
        return CUSTOM_COLOURS[self.colour]


CUSTOM_THINGS = tuple(CustomThing(c, s) for c in CUSTOM_COLOURS for s in CUSTOM_SHAPES)


def default_custom_root() -> str:
    return os.path.join(datasets_root(), "synthetic_custom")


def custom_categories() -> list[dict]:
    return [{"id": i + 1, "name": t.name, "isthing": 1, "color": list(t.rgb), "supercategory": "shape"}
            for i, t in enumerate(CUSTOM_THINGS)]


def _write_split(root: str, split: str, num_images: int, seed: int) -> None:
    image_dir = os.path.join(root, "images", split)
    os.makedirs(image_dir, exist_ok=True)
    category_of = {c["name"]: c["id"] for c in custom_categories()}
    images, annotations = [], []
    for index in range(num_images):
        rng = np.random.default_rng([seed, zlib.crc32(f"custom_{split}".encode()), index])
        scene = render_scene(rng, CUSTOM_THINGS, sizes=(128, 160, 192), objects_per_image=(1, 4))
        image_id, file_name = index + 1, f"{index:06d}.jpg"
        Image.fromarray(scene.image).save(os.path.join(image_dir, file_name), quality=92)
        images.append({"id": image_id, "file_name": file_name, "height": scene.image.shape[0],
                       "width": scene.image.shape[1]})
        for obj in scene.objects:
            annotations.append(instance_annotation(len(annotations) + 1, image_id, category_of[obj.thing.name],
                                                   obj.mask, "rle"))
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    with open(os.path.join(root, "annotations", f"{split}.json"), "w", encoding="utf-8") as f:
        json.dump({"images": images, "annotations": annotations, "categories": custom_categories()}, f)


def ensure_custom_dataset(root: str | None = None, *, seed: int = 0, num_train: int = 120, num_val: int = 30) -> str:
    """Write the custom set under `root` unless a complete generation with these parameters is there."""
    root = os.path.abspath(root or default_custom_root())
    manifest = {"version": CUSTOM_VERSION, "seed": seed, "num_train": num_train, "num_val": num_val}
    manifest_path = os.path.join(root, MANIFEST)
    if os.path.isfile(manifest_path):
        with open(manifest_path, encoding="utf-8") as f:
            if json.load(f) == manifest:
                return root
    if os.path.isdir(root) and os.listdir(root) and not os.path.isfile(manifest_path):
        raise FileExistsError(f"{root} exists, is not empty and holds no {MANIFEST}: not a synthetic custom set; "
                              "refusing to overwrite it")
    partial = f"{root}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    for split, count in zip(SPLITS, (num_train, num_val)):
        _write_split(partial, split, count, seed)
    with open(os.path.join(partial, MANIFEST), "w", encoding="utf-8") as f:
        json.dump(manifest, f)
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(os.path.dirname(root), exist_ok=True)
    os.rename(partial, root)
    return root


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the synthetic custom fine-tuning set (COCO instances json).")
    parser.add_argument("--root", default=None, help="output folder (default: $DETECTRON2_DATASETS/synthetic_custom)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-train", type=int, default=120)
    parser.add_argument("--num-val", type=int, default=30)
    args = parser.parse_args(argv)
    root = ensure_custom_dataset(args.root, seed=args.seed, num_train=args.num_train, num_val=args.num_val)
    print(f"synthetic custom dataset in {root}: classes {[t.name for t in CUSTOM_THINGS]}")


if __name__ == "__main__":
    main()
