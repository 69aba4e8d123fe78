"""COCO 2017: panoptic (133 classes), panoptic with semantic maps (for mIoU), instances (80), and the COCO-format
loaders that the other registrations reuse.

Dataset dicts follow Detectron2's standard formats:
- instances: `{"file_name", "image_id", "height", "width", "annotations": [{"bbox" (XYWH_ABS), "bbox_mode",
  "category_id" (contiguous), "iscrowd", "segmentation" (polygons or RLE, when present)}]}`;
- panoptic: `{"file_name", "image_id", "pan_seg_file_name", "segments_info": [{"id", "category_id" (contiguous),
  "iscrowd", "isthing", "area", "bbox"}], "sem_seg_file_name" (with a semantic root), "height"/"width" (when the
  json has them)}`.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Sequence

from detectron2.data import MetadataCatalog
from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES
from detectron2.structures import BoxMode

from .common import read_json_file, register, require_files, set_class_metadata

COCO_SPLITS = ("train", "val")


def drop_roboflow_parent(categories: list[dict]) -> list[dict]:
    """Roboflow exports add the dataset itself as a category that every real category names as supercategory."""
    parents = {c.get("supercategory") for c in categories}
    return [c for c in categories if not (c.get("supercategory") == "none" and c["name"] in parents)]


def category_id_map(dataset_name: str, json_file: str, categories: list[dict], class_names: Sequence[str] | None):
    """`(names, {json category id: contiguous id})`.

    With `class_names` (a shipped vocabulary) the json's categories are matched to it by name (exact, then ignoring
    surrounding whitespace); without, the json's categories sorted by id are the vocabulary. Categories with a blank
    name (ODinW ChessPieces' unnamed parent class) and Roboflow parent categories are left out.
    """
    categories = sorted((c for c in drop_roboflow_parent(categories) if c["name"].strip()), key=lambda c: c["id"])
    if class_names is None:
        return [c["name"] for c in categories], {c["id"]: i for i, c in enumerate(categories)}
    exact = {n: i for i, n in enumerate(class_names)}
    stripped = {n.strip(): i for i, n in enumerate(class_names)}
    id_map, unmatched = {}, []
    for c in categories:
        index = exact.get(c["name"], stripped.get(c["name"].strip()))
        if index is None:
            unmatched.append(c["name"])
        else:
            id_map[c["id"]] = index
    if unmatched:
        raise ValueError(f"dataset {dataset_name!r}: categories {unmatched[:10]} of {json_file} are not in its "
                         f"{len(class_names)}-class vocabulary")
    return list(class_names), id_map


def read_categories(dataset_name: str, json_file: str, class_names: Sequence[str] | None) -> dict:
    """Class metadata of a COCO-format json (for `register_class_resolver`)."""
    require_files(dataset_name, json_file)
    categories = read_json_file(dataset_name, json_file)["categories"]
    names, id_map = category_id_map(dataset_name, json_file, categories, class_names)
    return {"thing_classes": names, "thing_dataset_id_to_contiguous_id": id_map}


def load_coco_instances(
    dataset_name: str,
    json_file: str,
    image_root: str,
    *,
    class_names: Sequence[str] | None = None,
    id_map: dict[int, int] | None = None,
    image_path_fn: Callable[[str, dict], str] | None = None,
) -> list[dict]:
    """Load a COCO-format detection / instance json (see module docstring); stores the class metadata.

    Categories map to contiguous ids through `id_map` when given (with `class_names`), else by name
    (`category_id_map`). `image_path_fn(image_root, image_entry)` overrides `image_root/file_name`.
    """
    require_files(dataset_name, json_file, image_root)
    data = read_json_file(dataset_name, json_file)
    if id_map is None:
        names, id_map = category_id_map(dataset_name, json_file, data["categories"], class_names)
    else:
        names = list(class_names)
        unknown = sorted({c["id"] for c in data["categories"]} - set(id_map))
        if unknown:
            raise ValueError(f"dataset {dataset_name!r}: category ids {unknown[:10]} of {json_file} are not in "
                             f"its {len(names)}-class vocabulary")
    set_class_metadata(dataset_name, {"thing_classes": names, "thing_dataset_id_to_contiguous_id": id_map})
    per_image = defaultdict(list)
    for ann in data.get("annotations", []):
        if ann["category_id"] in id_map:
            per_image[ann["image_id"]].append(_instance_annotation(ann, id_map))
    records = []
    for image in data["images"]:
        path = image_path_fn(image_root, image) if image_path_fn else os.path.join(image_root, image["file_name"])
        records.append({
            "file_name": path,
            "image_id": image["id"],
            "height": image["height"],
            "width": image["width"],
            "annotations": per_image.get(image["id"], []),
        })
    return records


def _instance_annotation(ann: dict, id_map: dict) -> dict:
    obj = {
        "bbox": ann["bbox"],
        "bbox_mode": BoxMode.XYWH_ABS,
        "category_id": id_map[ann["category_id"]],
        "iscrowd": ann.get("iscrowd", 0),
    }
    segmentation = ann.get("segmentation")
    if isinstance(segmentation, dict):
        obj["segmentation"] = segmentation
    elif segmentation:
        polygons = [p for p in segmentation if len(p) % 2 == 0 and len(p) >= 6]
        if polygons:
            obj["segmentation"] = polygons
    return obj


def load_coco_panoptic(
    dataset_name: str,
    *,
    json_file: str,
    image_root: str,
    panoptic_root: str,
    sem_seg_root: str | None = None,
    image_file_fn: Callable[[str], str] | None = None,
) -> list[dict]:
    """Load a COCO-panoptic json + PNG folder; category ids are mapped with the dataset's metadata id maps.

    `image_file_fn(png_name)` gives the image path relative to `image_root` (default: the json's image entry, else
    the PNG name with a `.jpg` extension).
    """
    roots = [json_file, image_root, panoptic_root] + ([sem_seg_root] if sem_seg_root else [])
    require_files(dataset_name, *roots)
    meta = MetadataCatalog.get(dataset_name)
    thing_map, stuff_map = meta.thing_dataset_id_to_contiguous_id, meta.stuff_dataset_id_to_contiguous_id
    data = read_json_file(dataset_name, json_file)
    images = {image["id"]: image for image in data.get("images", [])}
    records = []
    for ann in data["annotations"]:
        png = ann["file_name"]
        image = images.get(ann["image_id"], {})
        if image_file_fn is not None:
            image_file = image_file_fn(png)
        else:
            image_file = image.get("file_name", os.path.splitext(png)[0] + ".jpg")
        record = {
            "file_name": os.path.join(image_root, image_file),
            "image_id": ann["image_id"],
            "pan_seg_file_name": os.path.join(panoptic_root, png),
            "segments_info": [_segment(s, thing_map, stuff_map, dataset_name, json_file) for s in ann["segments_info"]],
        }
        if "height" in image and "width" in image:
            record["height"], record["width"] = image["height"], image["width"]
        if sem_seg_root:
            record["sem_seg_file_name"] = os.path.join(sem_seg_root, png)
        records.append(record)
    return records


def _segment(segment: dict, thing_map: dict, stuff_map: dict, dataset_name: str, json_file: str) -> dict:
    category = segment["category_id"]
    if category in thing_map:
        contiguous, is_thing = thing_map[category], True
    elif category in stuff_map:
        contiguous, is_thing = stuff_map[category], False
    else:
        raise ValueError(f"dataset {dataset_name!r}: unknown category id {category} in {json_file}")
    return {**segment, "category_id": contiguous, "isthing": is_thing, "iscrowd": segment.get("iscrowd", 0)}


def coco_panoptic_metadata() -> dict:
    """133 classes, things first (Detectron2 convention: `stuff_classes` lists every class)."""
    names = [c["name"] for c in COCO_CATEGORIES]
    return {
        "thing_classes": names,
        "stuff_classes": names,
        "thing_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(COCO_CATEGORIES) if c["isthing"]},
        "stuff_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(COCO_CATEGORIES) if not c["isthing"]},
        "thing_colors": [c["color"] for c in COCO_CATEGORIES],
        "stuff_colors": [c["color"] for c in COCO_CATEGORIES],
    }


def coco_instance_metadata() -> dict:
    things = [c for c in COCO_CATEGORIES if c["isthing"]]
    return {
        "thing_classes": [c["name"] for c in things],
        "thing_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(things)},
        "thing_colors": [c["color"] for c in things],
    }


def register_coco(root: str) -> None:
    """coco_2017_{train,val}_panoptic[_with_sem_seg] and coco_2017_{train,val}."""
    coco = os.path.join(root, "coco")
    for split in COCO_SPLITS:
        image_root = os.path.join(coco, f"{split}2017")
        instances_json = os.path.join(coco, "annotations", f"instances_{split}2017.json")
        panoptic = {
            "json_file": os.path.join(coco, "annotations", f"panoptic_{split}2017.json"),
            "image_root": image_root,
            "panoptic_root": os.path.join(coco, f"panoptic_{split}2017"),
        }
        sem_seg_root = os.path.join(coco, f"panoptic_semseg_{split}2017")
        for suffix, semantic in (("", None), ("_with_sem_seg", sem_seg_root)):
            name = f"coco_2017_{split}_panoptic{suffix}"
            register(
                name,
                lambda n=name, s=semantic, p=panoptic: load_coco_panoptic(n, sem_seg_root=s, **p),
                tasks=("panoptic", "instance", "semantic") if semantic else ("panoptic", "instance"),
                evaluator_type="coco_panoptic_seg",
                expected_num_classes=133,
                ignore_label=255,
                label_divisor=1000,
                panoptic_json=panoptic["json_file"],
                panoptic_root=panoptic["panoptic_root"],
                image_root=image_root,
                json_file=instances_json,
                **({"sem_seg_root": semantic} if semantic else {}),
                **coco_panoptic_metadata(),
            )
        instance_meta = coco_instance_metadata()
        name = f"coco_2017_{split}"
        register(
            name,
            lambda n=name, j=instances_json, r=image_root, c=instance_meta["thing_classes"]: load_coco_instances(
                n, j, r, class_names=c),
            tasks=("instance",),
            evaluator_type="coco",
            expected_num_classes=80,
            ignore_label=255,
            json_file=instances_json,
            image_root=image_root,
            **instance_meta,
        )
