"""Registration of the synthetic datasets (`openseed.data.synthetic`) under `$DETECTRON2_DATASETS/synthetic`.

Names (prefix `synthetic` by default):
- `synthetic_panoptic_{train,val}`: COCO-panoptic-like, 8 things + 4 stuff, semantic maps and an instances json;
- `synthetic_boxes_{train,val}`: Objects365-like boxes of 4 thing classes absent from the panoptic set;
  `synthetic_boxes_val_masks`: the same val images with masks (mask AP of the box-only classes);
- `synthetic_zeroshot_val`: masks/boxes of 4 classes whose names occur in no training set;
- `synthetic_ade_val` (ADE-like panoptic, things and stuff interleaved), `synthetic_lvis_val` (LVIS json, frequency
  groups f/c/r = panoptic/box-only/zero-shot classes), `synthetic_odinw_val` (detection, shape names only).

The ablation benchmark (`openseed.data.synthetic.ablation`, family "ablation") is registered the same way from
`$DETECTRON2_DATASETS/synthetic_ablation` with the prefix `synabl`: `synabl_panoptic_{train,val}`,
`synabl_boxes_{train,val}`, `synabl_boxes_val_masks`, `synabl_zeroshot_val`.

Registration never touches the files; loading a set whose files are missing raises `DatasetFilesMissing` that names
them and says how to generate them.
"""

from __future__ import annotations

import os

from detectron2.data.datasets.lvis import load_lvis_json

from ..synthetic.ablation import FAMILY_PREFIX, family_sets
from ..synthetic.generate import default_synthetic_root
from ..synthetic.layout import SetPaths, SyntheticSet, set_paths
from ..synthetic.writers import LABEL_DIVISOR
from .coco import load_coco_instances, load_coco_panoptic
from .common import register, require_files


def _hint(root: str, family: str) -> str:
    flag = "" if family == "demo" else f" --family {family}"
    return f"Generate the synthetic datasets with `python -m openseed.data.synthetic --root {root}{flag}`."


def panoptic_metadata(spec: SyntheticSet) -> dict:
    """Detectron2 panoptic metadata: every class in `stuff_classes` (json order), thing/stuff id maps."""
    categories = spec.categories()
    names = [c["name"] for c in categories]
    return {
        "thing_classes": names,
        "stuff_classes": names,
        "thing_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(categories) if c["isthing"]},
        "stuff_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(categories) if not c["isthing"]},
        "thing_colors": [c["color"] for c in categories],
        "stuff_colors": [c["color"] for c in categories],
    }


def instance_metadata(spec: SyntheticSet) -> dict:
    things = [c for c in spec.categories() if c["isthing"]]
    return {
        "thing_classes": [c["name"] for c in things],
        "thing_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(things)},
        "thing_colors": [c["color"] for c in things],
    }


def _load_panoptic(name: str, paths: SetPaths, hint: str) -> list[dict]:
    require_files(name, paths.panoptic_json, paths.image_root, paths.panoptic_root, paths.semantic_root, hint=hint)
    return load_coco_panoptic(name, json_file=paths.panoptic_json, image_root=paths.image_root,
                              panoptic_root=paths.panoptic_root, sem_seg_root=paths.semantic_root)


def _load_instances(name: str, json_file: str, image_root: str, class_names: list[str], hint: str) -> list[dict]:
    require_files(name, json_file, image_root, hint=hint)
    return load_coco_instances(name, json_file, image_root, class_names=class_names)


def _load_lvis(name: str, paths: SetPaths, hint: str) -> list[dict]:
    require_files(name, paths.lvis_json, paths.image_root, hint=hint)
    return load_lvis_json(paths.lvis_json, os.path.dirname(paths.image_root) + os.sep)


def _register_set(name: str, spec: SyntheticSet, paths: SetPaths, hint: str) -> None:
    common = {"image_root": paths.image_root, "ignore_label": 255}
    if spec.kind == "panoptic":
        meta = panoptic_metadata(spec)
        register(name, lambda: _load_panoptic(name, paths, hint), tasks=("panoptic", "instance", "semantic"),
                 evaluator_type="ade20k_panoptic_seg" if spec.group == "ade" else "coco_panoptic_seg",
                 expected_num_classes=len(meta["stuff_classes"]), label_divisor=LABEL_DIVISOR,
                 panoptic_json=paths.panoptic_json, panoptic_root=paths.panoptic_root,
                 sem_seg_root=paths.semantic_root, json_file=paths.instances_json, **common, **meta)
        return
    meta = instance_metadata(spec)
    names = meta["thing_classes"]
    if spec.kind == "lvis":
        register(name, lambda: _load_lvis(name, paths, hint), tasks=("instance",), evaluator_type="lvis",
                 expected_num_classes=len(names), json_file=paths.lvis_json, **common, **meta)
        return
    tasks = ("detection",) if spec.kind == "detection" else ("instance",)
    register(name, lambda: _load_instances(name, paths.instances_json, paths.image_root, names, hint), tasks=tasks,
             evaluator_type="coco", expected_num_classes=len(names), json_file=paths.instances_json, **common, **meta)
    if spec.write_mask_json:
        register(f"{name}_masks", lambda: _load_instances(f"{name}_masks", paths.mask_json, paths.image_root, names,
                                                          hint),
                 tasks=("instance",), evaluator_type="coco", expected_num_classes=len(names),
                 json_file=paths.mask_json, **common, **meta)


def register_synthetic_datasets(root: str | None = None, prefix: str | None = None, family: str = "demo") -> list[str]:
    """Register every set of a family as `{prefix}_{key}` with files under `root`; returns the registered names.

    `prefix` defaults to the family's ("synthetic" for the demo's sets, "synabl" for the ablation benchmark)."""
    root = os.path.abspath(root or default_synthetic_root(family))
    prefix = prefix or FAMILY_PREFIX[family]
    hint = _hint(root, family)
    names = []
    for spec, _count in family_sets(family):
        name = f"{prefix}_{spec.key}"
        _register_set(name, spec, set_paths(root, spec), hint)
        names.append(name)
        if spec.write_mask_json:
            names.append(f"{name}_masks")
    return names
