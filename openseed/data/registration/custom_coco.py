"""Registration of any COCO-format json — boxes, polygon/RLE masks, or COCO panoptic — for fine-tuning and evaluation.

Entries of `DATASETS.CUSTOM` are `"name:json_file:image_root"` (panoptic jsons may add `":panoptic_root"`, default:
the json path without `.json`, COCO's convention); `register_custom_datasets(cfg)` registers them all, and
`register_coco_json(name, json_file, image_root)` registers one from code. The json is read once at registration
for its categories, which become the dataset's vocabulary (sorted by id; a Roboflow parent category is dropped).

Metadata besides the class names: `evaluator_type` ("coco" or "coco_panoptic_seg"), `json_file` / `panoptic_json`,
`image_root` (+ `panoptic_root`), `tasks`, and the training defaults `train_task` ("seg" with masks, "det" for
boxes only) and `train_mapper` (`coco_panoptic_lsj`, `coco_instance_lsj` or `objects365_lsj`).
"""

from __future__ import annotations

import logging
import os

from detectron2.data import DatasetCatalog

from .coco import category_id_map, load_coco_instances, load_coco_panoptic
from .common import read_json_file, register

logger = logging.getLogger(__name__)
_CUSTOM: dict[str, tuple[str, str, str | None]] = {}


def parse_custom_entry(entry: str) -> tuple[str, str, str, str | None]:
    """`"name:json:image_root[:panoptic_root]"` -> (name, json, image_root, panoptic_root or None)."""
    parts = entry.split(":")
    if len(parts) not in (3, 4) or not all(p.strip() for p in parts):
        raise ValueError(f"DATASETS.CUSTOM entry {entry!r} must be 'name:json_file:image_root' "
                         "(or 'name:json_file:image_root:panoptic_root' for a COCO panoptic json)")
    parts = [p.strip() for p in parts]
    return parts[0], parts[1], parts[2], parts[3] if len(parts) == 4 else None


def _read_json(name: str, json_file: str) -> dict:
    if not os.path.isfile(json_file):
        raise FileNotFoundError(f"custom dataset {name!r}: json file {json_file} not found")
    data = read_json_file(name, json_file)
    missing = [k for k in ("images", "annotations", "categories") if k not in data]
    if missing or not data["categories"]:
        raise ValueError(f"custom dataset {name!r}: {json_file} is not a COCO-format json "
                         f"(missing or empty keys: {missing or ['categories']})")
    return data


def _warn_unknown_categories(name: str, json_file: str, data: dict, known: set) -> None:
    unknown = [a["category_id"] for a in data["annotations"] if a.get("category_id") not in known]
    if unknown:
        logger.warning("custom dataset %r: %d annotations of %s have category ids absent from its categories "
                       "(e.g. %r); they are ignored", name, len(unknown), json_file, unknown[0])


def _panoptic_metadata(categories: list[dict]) -> dict:
    names = [c["name"] for c in categories]
    return {
        "thing_classes": names,
        "stuff_classes": names,
        "thing_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(categories) if c.get("isthing", 1)},
        "stuff_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(categories) if not c.get("isthing", 1)},
    }


def register_coco_json(name: str, json_file: str, image_root: str, panoptic_root: str | None = None) -> str:
    """Register one COCO-format json as dataset `name` (see the module docstring); returns `name`."""
    json_file, image_root = os.path.abspath(json_file), os.path.abspath(image_root)
    key = (json_file, image_root, panoptic_root)
    if name in DatasetCatalog.list() and _CUSTOM.get(name) != key:
        raise ValueError(f"custom dataset {name!r}: the name is already registered (choose another name)")
    data = _read_json(name, json_file)
    panoptic = any("segments_info" in a for a in data["annotations"]) or panoptic_root is not None
    if panoptic:
        root = os.path.abspath(panoptic_root or os.path.splitext(json_file)[0])
        categories = data["categories"]
        _warn_unknown_categories(name, json_file, {"annotations": [s for a in data["annotations"]
                                                                   for s in a.get("segments_info", [])]},
                                 {c["id"] for c in categories})
        register(name, lambda: load_coco_panoptic(name, json_file=json_file, image_root=image_root,
                                                  panoptic_root=root),
                 tasks=("panoptic",), evaluator_type="coco_panoptic_seg", expected_num_classes=len(categories),
                 panoptic_json=json_file, panoptic_root=root, image_root=image_root,
                 ignore_label=255, label_divisor=1000, train_task="seg", train_mapper="coco_panoptic_lsj",
                 **_panoptic_metadata(categories))
    else:
        names, id_map = category_id_map(name, json_file, data["categories"], None)
        _warn_unknown_categories(name, json_file, data, set(id_map))
        has_masks = any(a.get("segmentation") for a in data["annotations"])
        register(name, lambda: load_coco_instances(name, json_file, image_root, class_names=names),
                 tasks=("instance",) if has_masks else ("detection",), evaluator_type="coco",
                 expected_num_classes=len(names), json_file=json_file,
                 image_root=image_root, ignore_label=255, train_task="seg" if has_masks else "det",
                 train_mapper="coco_instance_lsj" if has_masks else "objects365_lsj",
                 thing_classes=names, thing_dataset_id_to_contiguous_id=id_map)
    _CUSTOM[name] = key
    logger.info("registered custom dataset %r (%s, %d classes) from %s", name, "panoptic" if panoptic else
                "instances", len(data["categories"]), json_file)
    return name


def register_custom_datasets(cfg) -> list[str]:
    """Register every `DATASETS.CUSTOM` entry; returns their names."""
    return [register_coco_json(*parse_custom_entry(entry)) for entry in cfg.DATASETS.CUSTOM]
