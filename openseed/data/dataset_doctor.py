"""Dataset doctor: checks a COCO instances or panoptic json (and its images) before anyone trains on it.

    report = check_coco_dataset("train.json", "images/")            # or panoptic: panoptic_root="panoptic/"
    print(report.summary()); sys.exit(1 if report.errors else 0)

Each problem is a `Finding` (code, severity, count, examples). Codes:
- errors: `json` (unreadable / not COCO), `missing_image`, `unreadable_image`, `image_size` (json height/width
  differ from the file), `duplicate_image_id`, `duplicate_annotation_id`, `duplicate_category_id`,
  `unknown_category` (annotation category not in the category list), `unknown_image` (annotation of no image),
  `box_outside` (box beyond the image by more than `BOX_TOLERANCE` px), `box_zero_area`, `mask_empty` (a polygon
  of < 3 points, an RLE / polygon / panoptic segment without pixels), `name_collision` (class names equal after
  `openseed.vocabulary.normalize_class_name` and lower-casing), `missing_panoptic_png`;
- warnings: `thing_stuff` (categories without an `isthing` flag in a panoptic json, or stuff categories in an
  instances json, which trains them as things), `unlabelled_segment` (panoptic PNG ids absent from segments_info),
  `image_without_annotations`, `crowd`.
`TrainingView` says what the training mapper will see: the task and mapper `DATASETS.CUSTOM` registration picks,
images and instances kept (valid, non-crowd), instances per class under the normalised names.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np
import pycocotools.mask as mask_util
from PIL import Image

from openseed.vocabulary import normalize_class_name

BOX_TOLERANCE = 1.0  # pixels a box may exceed the image (rounding of float coordinates)
MAX_EXAMPLES = 5
ERROR, WARNING = "error", "warning"


@dataclass
class Finding:
    code: str
    severity: str
    description: str
    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, example: str) -> None:
        self.count += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(example)


@dataclass
class TrainingView:
    """What the training mapper will train on."""

    task: str = ""
    mapper: str = ""
    images: int = 0
    images_kept: int = 0
    instances_kept: int = 0
    per_class: dict[str, int] = field(default_factory=dict)


@dataclass
class DatasetReport:
    source: str
    kind: str = "instances"
    num_images: int = 0
    num_annotations: int = 0
    num_categories: int = 0
    findings: dict[str, Finding] = field(default_factory=dict)
    training: TrainingView = field(default_factory=TrainingView)
    listed_image_ids: set = field(default_factory=set)

    def problem(self, code: str, severity: str, description: str, example: str) -> None:
        if code not in self.findings:
            self.findings[code] = Finding(code, severity, description)
        self.findings[code].add(example)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings.values() if f.severity == ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings.values() if f.severity == WARNING]

    def summary(self) -> str:
        lines = [f"{self.source}: COCO {self.kind} json, {self.num_images} images, {self.num_annotations} "
                 f"annotations, {self.num_categories} categories"]
        for finding in self.errors + self.warnings:
            lines.append(f"  {finding.severity.upper()} {finding.code}: {finding.count} × {finding.description}; "
                         f"e.g. {'; '.join(finding.examples)}")
        view = self.training
        if view.task:
            lines.append(f"training view: task {view.task!r}, mapper {view.mapper!r}: {view.images_kept} of "
                         f"{view.images} images with at least one usable instance, {view.instances_kept} instances")
            lines += [f"  {name!r}: {count} instances" for name, count in view.per_class.items()]
        verdict = f"{len(self.errors)} kind(s) of error, {len(self.warnings)} kind(s) of warning"
        lines.append(("FAILED: " if self.errors else "OK: ") + verdict)
        return "\n".join(lines)


def _read_json(path: str, report: DatasetReport) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as error:
        report.problem("json", ERROR, "annotation file unreadable", f"{path}: {error}")
        return None
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(data, dict) or k not in data]
    if missing:
        report.problem("json", ERROR, "not a COCO json", f"{path} lacks {missing}")
        return None
    return data


def _duplicates(items: list[dict], code: str, what: str, report: DatasetReport) -> None:
    for value, count in Counter(item.get("id") for item in items).items():
        if count > 1:
            report.problem(code, ERROR, f"{what} ids used more than once", f"id {value} × {count}")


def _check_categories(categories: list[dict], panoptic: bool, report: DatasetReport) -> dict[int, dict]:
    _duplicates(categories, "duplicate_category_id", "category", report)
    by_normalised = defaultdict(list)
    for category in categories:
        # both text encoders' tokenizers lower-case, so names differing only in case are one text too
        by_normalised[normalize_class_name(str(category.get("name", ""))).lower()].append(category.get("name"))
        if panoptic and "isthing" not in category:
            report.problem("thing_stuff", WARNING, "categories without an isthing flag (taken as things)",
                           repr(category.get("name")))
        if not panoptic and category.get("isthing", 1) == 0:
            report.problem("thing_stuff", WARNING, "stuff categories in an instances json (trained as things)",
                           repr(category.get("name")))
    for normalised, names in by_normalised.items():
        if len(names) > 1:
            report.problem("name_collision", ERROR, "class names identical after name normalisation",
                           f"{names} -> {normalised!r}")
    return {c.get("id"): c for c in categories}


def _check_images(images: list[dict], image_root: str, report: DatasetReport) -> dict[int, dict]:
    _duplicates(images, "duplicate_image_id", "image", report)
    usable = {}
    for image in images:
        path = os.path.join(image_root, str(image.get("file_name", "")))
        if not os.path.isfile(path):
            report.problem("missing_image", ERROR, "image files missing", path)
            continue
        try:
            with Image.open(path) as handle:
                handle.load()
                width, height = handle.size
        except (OSError, ValueError) as error:
            report.problem("unreadable_image", ERROR, "image files that cannot be decoded", f"{path}: {error}")
            continue
        if (image.get("width"), image.get("height")) != (width, height):
            report.problem("image_size", ERROR, "images whose json size differs from the file",
                           f"{path}: json {image.get('width')}×{image.get('height')}, file {width}×{height}")
            continue
        usable[image.get("id")] = image
    return usable


def _box_ok(bbox, image: dict, where: str, report: DatasetReport) -> bool:
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        report.problem("box_zero_area", ERROR, "boxes missing or not [x, y, w, h]", where)
        return False
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        report.problem("box_zero_area", ERROR, "boxes of zero or negative width/height", f"{where}: {bbox}")
        return False
    if x < -BOX_TOLERANCE or y < -BOX_TOLERANCE or x + w > image["width"] + BOX_TOLERANCE or \
            y + h > image["height"] + BOX_TOLERANCE:
        report.problem("box_outside", ERROR, "boxes beyond the image", f"{where}: {bbox} in "
                       f"{image['width']}×{image['height']}")
        return False
    return True


def _mask_pixels(segmentation, image: dict) -> int:
    """Pixels of a COCO polygon list or RLE; 0 for degenerate polygons (< 3 points)."""
    height, width = image["height"], image["width"]
    if isinstance(segmentation, list):
        polygons = [p for p in segmentation if isinstance(p, list) and len(p) >= 6]
        if not polygons:
            return 0
        return int(mask_util.area(mask_util.merge(mask_util.frPyObjects(polygons, height, width))))
    rle = segmentation
    if isinstance(rle.get("counts"), list):
        rle = mask_util.frPyObjects(rle, height, width)
    return int(mask_util.area(rle))


def _check_instances(data: dict, images: dict, categories: dict, report: DatasetReport) -> Counter:
    kept = Counter()
    with_masks = any(a.get("segmentation") for a in data["annotations"])
    for ann in data["annotations"]:
        where = f"annotation {ann.get('id')} (image {ann.get('image_id')})"
        if ann.get("category_id") not in categories:
            report.problem("unknown_category", ERROR, "annotations whose category id is not in the category list",
                           f"{where}: category {ann.get('category_id')}")
            continue
        image = images.get(ann.get("image_id"))
        if image is None:
            if ann.get("image_id") not in report.listed_image_ids:
                report.problem("unknown_image", ERROR, "annotations of an image id not in the image list", where)
            continue
        if not _box_ok(ann.get("bbox"), image, where, report):
            continue
        if with_masks:
            segmentation = ann.get("segmentation")
            if not segmentation or _mask_pixels(segmentation, image) == 0:
                report.problem("mask_empty", ERROR, "masks without pixels or polygons of < 3 points", where)
                continue
        if ann.get("iscrowd", 0):
            report.problem("crowd", WARNING, "crowd annotations (not trained on)", where)
            continue
        kept[(ann["image_id"], ann["category_id"])] += 1
    return kept


def _check_panoptic(data: dict, images: dict, categories: dict, panoptic_root: str, report: DatasetReport) -> Counter:
    kept = Counter()
    for ann in data["annotations"]:
        image = images.get(ann.get("image_id"))
        if image is None:
            continue
        png = os.path.join(panoptic_root, str(ann.get("file_name", "")))
        if not os.path.isfile(png):
            report.problem("missing_panoptic_png", ERROR, "panoptic PNGs missing", png)
            continue
        rgb = np.asarray(Image.open(png).convert("RGB"), dtype=np.int64)
        ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
        present = Counter(ids.reshape(-1).tolist())
        listed = set()
        _duplicates(ann.get("segments_info", []), "duplicate_annotation_id", "segment", report)
        for segment in ann.get("segments_info", []):
            where = f"segment {segment.get('id')} of {png}"
            listed.add(segment.get("id"))
            if segment.get("category_id") not in categories:
                report.problem("unknown_category", ERROR, "segments whose category id is not in the category list",
                               f"{where}: category {segment.get('category_id')}")
                continue
            if present.get(segment.get("id"), 0) == 0:
                report.problem("mask_empty", ERROR, "segments without pixels in the PNG", where)
                continue
            if "bbox" in segment and not _box_ok(segment["bbox"], image, where, report):
                continue
            if not segment.get("iscrowd", 0):
                kept[(ann["image_id"], segment["category_id"])] += 1
        unlabelled = sorted(set(present) - listed - {0})
        if unlabelled:
            report.problem("unlabelled_segment", WARNING, "PNG segment ids absent from segments_info (void)",
                           f"{png}: ids {unlabelled[:5]}")
    return kept


def check_coco_dataset(json_file: str, image_root: str, panoptic_root: str | None = None) -> DatasetReport:
    """Check one COCO instances or panoptic json (panoptic when its annotations hold `segments_info`)."""
    report = DatasetReport(source=json_file)
    data = _read_json(json_file, report)
    if data is None:
        return report
    panoptic = any("segments_info" in a for a in data["annotations"]) or panoptic_root is not None
    report.kind = "panoptic" if panoptic else "instances"
    report.num_images, report.num_annotations = len(data["images"]), len(data["annotations"])
    report.num_categories = len(data["categories"])
    report.listed_image_ids = {image.get("id") for image in data["images"]}
    categories = _check_categories(data["categories"], panoptic, report)
    images = _check_images(data["images"], image_root, report)
    if panoptic:
        kept = _check_panoptic(data, images, categories, panoptic_root or os.path.splitext(json_file)[0], report)
    else:
        _duplicates(data["annotations"], "duplicate_annotation_id", "annotation", report)
        kept = _check_instances(data, images, categories, report)
    annotated = {image_id for image_id, _ in kept}
    for image_id, image in images.items():
        if image_id not in annotated:
            report.problem("image_without_annotations", WARNING, "images without a usable annotation",
                           str(image.get("file_name")))
    with_masks = panoptic or any(a.get("segmentation") for a in data["annotations"])
    per_class = Counter()
    for (_, category_id), count in kept.items():
        per_class[normalize_class_name(str(categories[category_id].get("name", "")))] += count
    report.training = TrainingView(
        task="seg" if with_masks else "det",
        mapper="coco_panoptic_lsj" if panoptic else ("coco_instance_lsj" if with_masks else "objects365_lsj"),
        images=report.num_images, images_kept=len(annotated), instances_kept=sum(kept.values()),
        per_class={normalize_class_name(str(c.get("name", ""))): per_class.get(
            normalize_class_name(str(c.get("name", ""))), 0) for c in data["categories"]})
    return report
