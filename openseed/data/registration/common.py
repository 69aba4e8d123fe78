"""Shared pieces of the dataset registrations: the registry of names, missing-file errors.

Every real dataset is registered whether or not its files are present; `DatasetCatalog.get(name)` on a dataset whose
files are missing raises `DatasetFilesMissing` naming the paths it looked for and pointing to `datasets/README.md`.

Metadata keys set for every dataset (besides Detectron2's `thing_classes`, `stuff_classes`, id maps, roots):
- `tasks`: the evaluation tasks of the dataset (docs/official_behaviours.md §9.5), a tuple drawn from `TASKS`;
- `evaluator_type`, `ignore_label`;
- `expected_num_classes`: the size of the dataset's vocabulary (None where only its files know it: SegInW sets);
- `vocabulary_source`: `"shipped"` (names known without the data) or `"annotations"` (names read from the dataset's
  own files; `resolve_metadata(name)` reads them, and loading the dataset does too).
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Callable, Iterable
from importlib.resources import files
from typing import Any

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_sem_seg

from openseed.structures import OUTPUT_TASKS as TASKS

from ..paths import datasets_root

DATASETS_README = "datasets/README.md"
VOCABULARY_SOURCES = ("shipped", "annotations")

# name -> expected number of classes, for every dataset registered by this package (filled by `register`)
EXPECTED_NUM_CLASSES: dict[str, int | None] = {}
_CLASS_RESOLVERS: dict[str, Callable[[], dict]] = {}


class DatasetFilesMissing(FileNotFoundError):
    """A registered dataset was used but some of its files are not where the registration expects them."""


def read_vocab_file(file_name: str) -> Any:
    """A class-name file shipped in `openseed/data/vocab/` (JSON)."""
    return json.loads(files("openseed.data").joinpath("vocab", file_name).read_text(encoding="utf-8"))


def read_json_file(dataset_name: str, path: str) -> Any:
    """The content of the annotation file `path`; a file that is not valid JSON (corrupt, truncated) raises
    `ValueError` naming the dataset and the file."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"dataset {dataset_name!r}: annotation file {path} is corrupt or truncated ({error})") from None


def require_files(dataset_name: str, *paths: str, hint: str = "") -> None:
    """Raise `DatasetFilesMissing` listing every path that does not exist."""
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        listed = "\n  ".join(missing)
        extra = f" {hint}" if hint else ""
        raise DatasetFilesMissing(
            f"dataset {dataset_name!r}: missing file(s):\n  {listed}\n"
            f"See {DATASETS_README} for the expected layout under $DETECTRON2_DATASETS "
            f"(now {datasets_root()!r}) and how to prepare it.{extra}"
        )


def register(
    name: str,
    loader: Callable[[], list[dict]],
    *,
    tasks: Iterable[str],
    evaluator_type: str,
    expected_num_classes: int | None,
    vocabulary_source: str = "shipped",
    **metadata: Any,
) -> None:
    """Register `name` (replacing a registration of the same name, e.g. Detectron2's own) with its metadata."""
    tasks = tuple(tasks)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        raise ValueError(f"dataset {name!r}: tasks {tasks} must be a non-empty subset of {TASKS}")
    if vocabulary_source not in VOCABULARY_SOURCES:
        raise ValueError(f"dataset {name!r}: vocabulary_source must be one of {VOCABULARY_SOURCES}")
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
    if name in MetadataCatalog.list():
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, loader)
    MetadataCatalog.get(name).set(
        tasks=tasks,
        evaluator_type=evaluator_type,
        expected_num_classes=expected_num_classes,
        vocabulary_source=vocabulary_source,
        **metadata,
    )
    EXPECTED_NUM_CLASSES[name] = expected_num_classes


def register_class_resolver(name: str, resolver: Callable[[], dict]) -> None:
    """For a dataset registered without class names: `resolver()` reads them (and id maps) from its files."""
    _CLASS_RESOLVERS[name] = resolver


def _has_classes(metadata) -> bool:
    return bool(getattr(metadata, "thing_classes", None) or getattr(metadata, "stuff_classes", None))


def resolve_metadata(name: str):
    """The dataset's Detectron2 metadata with its class names filled in.

    For datasets whose vocabulary is read from annotation files this reads them (once) and raises
    `DatasetFilesMissing` when they are absent. Id maps of COCO-format jsons matched by name (ODinW, Objects365)
    are set when the dataset is loaded.
    """
    metadata = MetadataCatalog.get(name)
    resolver = _CLASS_RESOLVERS.get(name)
    if resolver is not None and not _has_classes(metadata):
        set_class_metadata(name, resolver())
    return metadata


def set_class_metadata(name: str, class_metadata: dict) -> None:
    """Store class names / id maps read from files, checking the count against the registration."""
    metadata = MetadataCatalog.get(name)
    names = class_metadata.get("stuff_classes") or class_metadata.get("thing_classes") or []
    expected = getattr(metadata, "expected_num_classes", None)
    if expected is not None and len(names) != expected:
        raise ValueError(
            f"dataset {name!r}: its annotation files define {len(names)} classes, expected {expected} "
            f"(see {DATASETS_README})"
        )
    metadata.set(**class_metadata)


def load_sem_seg_folder(dataset_name: str, image_root: str, gt_root: str, *, image_ext: str = "jpg",
                        gt_ext: str = "png") -> list[dict]:
    """`{"file_name", "sem_seg_file_name"}` pairs matched by file stem (Detectron2's `load_sem_seg`)."""
    require_files(dataset_name, image_root, gt_root)
    return load_sem_seg(gt_root, image_root, gt_ext=gt_ext, image_ext=image_ext)


def read_class_list(dataset_name: str, path: str, expected: int) -> list[str]:
    """One class name per line, in contiguous-id order; blank lines are ignored."""
    require_files(dataset_name, path)
    with open(path, encoding="utf-8") as f:
        names = [line.strip() for line in f if line.strip()]
    if len(names) != expected:
        raise ValueError(f"dataset {dataset_name!r}: {path} lists {len(names)} classes, expected {expected}")
    return names


def register_sem_seg_folder(name: str, image_root: str, sem_seg_root: str, stuff_classes: list[str]) -> None:
    """Register a semantic-segmentation dataset of image / label-png pairs (ignore label 255), one class per name."""
    register(
        name,
        lambda: load_sem_seg_folder(name, image_root, sem_seg_root),
        tasks=("semantic",),
        evaluator_type="sem_seg",
        expected_num_classes=len(stuff_classes),
        ignore_label=255,
        image_root=image_root,
        sem_seg_root=sem_seg_root,
        stuff_classes=list(stuff_classes),
    )


def closest_registered_names(name: str, count: int = 5) -> list[str]:
    """Up to `count` registered dataset names closest to `name` (difflib ratio ≥ 0.5, case-insensitive), best first."""
    registered = {registered_name.lower(): registered_name for registered_name in DatasetCatalog.list()}
    matches = difflib.get_close_matches(name.lower(), list(registered), n=count, cutoff=0.5)
    return [registered[match] for match in matches]
