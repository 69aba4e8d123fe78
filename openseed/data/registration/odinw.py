"""ODinW object detection in the wild: the 13-set and 35-set suites (GLIP's split), box AP per set.

Names: `odinw13_<Set>_{val,train}` and `odinw35_<Set>_{val,train}`, e.g. `odinw13_Aquarium_val`,
`odinw35_AerialMaritimeDrone_large_val`. Each suite keeps its own entries: two ODinW-13 sets read other annotation
files than their ODinW-35 namesakes. Class names, annotation files and image folders are shipped in
`vocab/odinw.json` (extracted from mmdet's GLIP configs by `datasets/prepare_vocab.py`); files live under
`odinw/<set root>/` as in GLIP's download. The `_train` split is the same layout with `valid` -> `train`.
A class with a blank name (ChessPieces' unnamed parent class, no boxes) is left out of the vocabulary.
"""

from __future__ import annotations

import os
from functools import lru_cache

from .coco import load_coco_instances
from .common import read_vocab_file, register

ODINW_SUITES = ("odinw13", "odinw35")


@lru_cache(maxsize=1)
def odinw_sets() -> dict[str, tuple[dict, ...]]:
    """`{"odinw13": (13 set entries), "odinw35": (35 set entries)}`; entry keys: name, root, ann_file, image_dir,
    classes."""
    vocab = read_vocab_file("odinw.json")
    return {suite: tuple(vocab[suite]) for suite in ODINW_SUITES}


def odinw_dataset_names(suite: str, split: str = "val") -> tuple[str, ...]:
    return tuple(f"{suite}_{entry['name']}_{split}" for entry in odinw_sets()[suite])


def _train_path(relative: str) -> str:
    """`valid/annotations_without_background.json` -> `train/...`; `val_annotations...` -> `train_annotations...`."""
    parts = relative.split("/")
    parts = ["train" if p == "valid" else p for p in parts]
    if parts[-1].startswith("val_"):
        parts[-1] = "train_" + parts[-1][len("val_"):]
    return "/".join(parts)


def register_odinw(root: str) -> None:
    for suite, entries in odinw_sets().items():
        for entry in entries:
            for split in ("val", "train"):
                ann_file, image_dir = entry["ann_file"], entry["image_dir"]
                if split == "train":
                    ann_file, image_dir = _train_path(ann_file), _train_path(image_dir)
                base = os.path.join(root, "odinw", entry["root"])
                json_file, image_root = os.path.join(base, ann_file), os.path.join(base, image_dir)
                name = f"{suite}_{entry['name']}_{split}"
                classes = [c for c in entry["classes"] if c.strip()]
                register(
                    name,
                    lambda n=name, j=json_file, r=image_root, c=classes: load_coco_instances(n, j, r, class_names=c),
                    tasks=("detection",),
                    evaluator_type="coco",
                    expected_num_classes=len(classes),
                    json_file=json_file,
                    image_root=image_root,
                    thing_classes=classes,
                    suite=suite,
                )
