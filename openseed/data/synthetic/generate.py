"""Write the synthetic datasets to disk, deterministically from a seed (same seed → same bytes).

Each image is rendered from its own generator seeded by (seed, set key, image index), so sets are independent of
each other and of their sizes. A generation is written to a temporary sibling folder and moved into place when
complete (`manifest.json` last), so a half-written root is never used.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import zlib

import numpy as np
from PIL import Image

from ..paths import datasets_root
from .ablation import FAMILY_FOLDER, family_sets
from .discrepancy import render_discrepancy_scene
from .drawing import render_scene
from .layout import GENERATOR_VERSION, MANIFEST, SyntheticSet, lvis_frequency, set_paths
from .writers import ids_to_rgb, instance_annotation, panoptic_ids, semantic_map

logger = logging.getLogger(__name__)
JPEG_QUALITY = 92


def default_synthetic_root(family: str = "demo") -> str:
    """`$DETECTRON2_DATASETS/synthetic` (default `datasets/synthetic`); `synthetic_ablation` for the ablation family."""
    if family not in FAMILY_FOLDER:
        raise ValueError(f"unknown synthetic family {family!r}; known: {tuple(FAMILY_FOLDER)}")
    return os.path.join(datasets_root(), FAMILY_FOLDER[family])


def _write_json(path: str, data: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, separators=(",", ":"))


def generate_set(root: str, spec: SyntheticSet, num_images: int, seed: int) -> None:
    """Render `num_images` scenes of one set and write its images and annotation files under `root`."""
    paths = set_paths(root, spec)
    os.makedirs(paths.image_root, exist_ok=True)
    if spec.kind == "panoptic":
        os.makedirs(paths.panoptic_root, exist_ok=True)
        os.makedirs(paths.semantic_root, exist_ok=True)
    categories = spec.categories()
    category_of = {c["name"]: c["id"] for c in categories}
    contiguous = {c["id"]: i for i, c in enumerate(categories)}
    thing_categories = [c for c in categories if c["isthing"]]
    images, panoptic_anns, boxes, masked = [], [], [], []
    set_seed = zlib.crc32(spec.key.encode("utf-8"))
    renderers = {"bands": render_scene, "amorphous": render_discrepancy_scene}
    if spec.scene not in renderers:
        raise ValueError(f"synthetic set {spec.key!r}: unknown scene renderer {spec.scene!r}; known: {list(renderers)}")
    render = renderers[spec.scene]
    for index in range(num_images):
        rng = np.random.default_rng([seed, set_seed, index])
        scene = render(rng, spec.things, sizes=spec.sizes, objects_per_image=spec.objects_per_image)
        image_id, stem = index + 1, f"{index:06d}"
        h, w = scene.image.shape[:2]
        Image.fromarray(scene.image).save(os.path.join(paths.image_root, stem + ".jpg"), quality=JPEG_QUALITY)
        image = {"id": image_id, "file_name": stem + ".jpg", "height": h, "width": w}
        object_categories = [category_of[spec.thing_label(o.thing)] for o in scene.objects]
        if spec.kind == "lvis":
            present = set(object_categories)
            image.update(coco_url=f"http://synthetic.invalid/images/{stem}.jpg", not_exhaustive_category_ids=[],
                         neg_category_ids=[c["id"] for c in categories if c["id"] not in present])
        images.append(image)
        for obj, category in zip(scene.objects, object_categories):
            ann_id = len(boxes) + 1
            polygon_or_rle = obj.polygon if spec.kind == "lvis" else "rle"
            boxes.append(instance_annotation(ann_id, image_id, category, obj.mask, None))
            masked.append(instance_annotation(ann_id, image_id, category, obj.mask, polygon_or_rle))
        if spec.kind == "panoptic":
            stuff_category = {c["name"]: c["id"] for c in categories if not c["isthing"]}
            ids, segments = panoptic_ids(scene, object_categories, stuff_category)
            Image.fromarray(ids_to_rgb(ids)).save(os.path.join(paths.panoptic_root, stem + ".png"))
            Image.fromarray(semantic_map(ids, segments, contiguous)).save(os.path.join(paths.semantic_root, stem + ".png"))
            panoptic_anns.append({"image_id": image_id, "file_name": stem + ".png", "segments_info": segments})

    if spec.kind == "panoptic":
        _write_json(paths.panoptic_json, {"images": images, "annotations": panoptic_anns, "categories": categories})
        _write_json(paths.instances_json, {"images": images, "annotations": masked, "categories": thing_categories})
    elif spec.kind == "detection":
        _write_json(paths.instances_json, {"images": images, "annotations": boxes, "categories": categories})
        if spec.write_mask_json:
            _write_json(paths.mask_json, {"images": images, "annotations": masked, "categories": categories})
    elif spec.kind == "instances":
        _write_json(paths.instances_json, {"images": images, "annotations": masked, "categories": categories})
    elif spec.kind == "lvis":
        _write_json(paths.lvis_json, {"images": images, "annotations": masked,
                                      "categories": _lvis_categories(categories, masked)})
    else:
        raise ValueError(f"synthetic set {spec.key!r}: unknown kind {spec.kind!r}")


def _lvis_categories(categories: list[dict], annotations: list[dict]) -> list[dict]:
    result = []
    for c in categories:
        anns = [a for a in annotations if a["category_id"] == c["id"]]
        result.append({"id": c["id"], "name": c["name"], "synonyms": [c["name"]], "def": f"a {c['name']}",
                       "frequency": lvis_frequency(c["name"]), "instance_count": len(anns),
                       "image_count": len({a["image_id"] for a in anns})})
    return result


def _manifest(seed: int, num_train: int, num_val: int, family: str) -> dict:
    manifest = {"generator_version": GENERATOR_VERSION, "seed": seed, "num_train": num_train, "num_val": num_val}
    if family != "demo":  # the demo's manifest stays as it was
        manifest["family"] = family
    return manifest


def read_manifest(root: str) -> dict | None:
    path = os.path.join(root, MANIFEST)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def generate_synthetic_datasets(root: str | None = None, *, seed: int = 0, num_train: int = 300,
                                num_val: int = 50, family: str = "demo") -> str:
    """Generate every set of a family ("demo" or "ablation", see `ablation.py`) under `root` (replacing an earlier
    generation there); returns the root."""
    root = os.path.abspath(root or default_synthetic_root(family))
    if os.path.isdir(root) and os.listdir(root) and read_manifest(root) is None:
        raise FileExistsError(f"{root} exists, is not empty and holds no {MANIFEST}: it is not a synthetic-dataset "
                              "folder written by openseed.data.synthetic; refusing to overwrite it")
    start = time.perf_counter()
    partial = f"{root}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    for spec, count in family_sets(family, num_train, num_val):
        generate_set(partial, spec, count, seed)
    manifest = _manifest(seed, num_train, num_val, family)
    _write_json(os.path.join(partial, MANIFEST), manifest)
    _install(partial, root)
    logger.info("synthetic datasets written to %s in %.1f s", root, time.perf_counter() - start)
    return root


def _install(partial: str, root: str) -> None:
    """Move a complete generation into place; an older generation at `root` is removed afterwards."""
    os.makedirs(os.path.dirname(root), exist_ok=True)
    old = None
    if os.path.isdir(root):
        old = f"{root}.old-{os.getpid()}"
        os.rename(root, old)
    os.rename(partial, root)
    if old is not None:
        shutil.rmtree(old)


def ensure_synthetic_datasets(root: str | None = None, *, seed: int = 0, num_train: int = 300,
                              num_val: int = 50, family: str = "demo") -> str:
    """Generate the synthetic sets under `root` unless a complete generation with these parameters is there."""
    root = os.path.abspath(root or default_synthetic_root(family))
    if read_manifest(root) != _manifest(seed, num_train, num_val, family):
        generate_synthetic_datasets(root, seed=seed, num_train=num_train, num_val=num_val, family=family)
    return root
