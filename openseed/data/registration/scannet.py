"""ScanNet frames (the 25k-frame subset): semantic with 20 / 37 / 40 NYU classes and panoptic with 20 classes.

Files under `scannet_frames_25k/`:
- images `images/<scene>/color/<frame>.jpg`, split list `meta/<split>.txt` (first column: `<scene>/color/<frame>.jpg`);
- semantic labels `images/<scene>/label{21,38,41}/<frame>.png` (0 = unannotated, k = k-th class), converted by
  `datasets/prepare_offset_labels.py` to `label{21,38,41}_detectron2/` (class k-1, 255 = ignore), which is read;
- panoptic `scannet_panoptic.json` + `scannet_panoptic/<scene>__<frame>.png` (category ids = NYU-40 ids), with
  semantic maps `scannet_panoptic_semseg/` made by `datasets/prepare_panoptic_semantic.py`.
Names: `scannet_{21,38,41}_val_seg` (20 / 37 / 40 classes) and `scannet_21_panoptic_val`. Class names: the
hand-written NYU-40 list (`vocab/nyu40.json`).
"""

from __future__ import annotations

import os

from .coco import load_coco_panoptic
from .common import read_vocab_file, register, require_files

SCANNET_SEMANTIC = {"scannet_21_val_seg": ("label21", 20), "scannet_38_val_seg": ("label38", 37),
                    "scannet_41_val_seg": ("label41", 40)}
CONVERTED_SUFFIX = "_detectron2"


def nyu40_names() -> list[str]:
    return [c["name"] for c in read_vocab_file("nyu40.json")["categories"]]


def scannet20_panoptic_metadata() -> dict:
    vocab = read_vocab_file("nyu40.json")
    names = {c["id"]: c["name"] for c in vocab["categories"]}
    ids, stuff_ids = vocab["scannet20_ids"], set(vocab["scannet20_stuff_ids"])
    classes = [names[i] for i in ids]
    return {
        "thing_classes": classes,
        "stuff_classes": classes,
        "thing_dataset_id_to_contiguous_id": {k: i for i, k in enumerate(ids) if k not in stuff_ids},
        "stuff_dataset_id_to_contiguous_id": {k: i for i, k in enumerate(ids) if k in stuff_ids},
    }


def scannet_semantic_classes(num_classes: int) -> list[str]:
    """20 -> the ScanNet-20 subset of NYU-40; 37 / 40 -> the first 37 / all 40 NYU-40 classes."""
    if num_classes == 20:
        return scannet20_panoptic_metadata()["stuff_classes"]
    return nyu40_names()[:num_classes]


def load_scannet_semantic(dataset_name: str, root: str, split: str, label_dir: str) -> list[dict]:
    split_file = os.path.join(root, "meta", f"{split}.txt")
    require_files(dataset_name, split_file)
    with open(split_file, encoding="utf-8") as f:
        frames = [line.split()[0] for line in f if line.strip()]
    records = []
    for frame in frames:
        parts = frame.split("/")
        scene, file_name = parts[0], parts[-1]
        label = os.path.join(root, "images", scene, label_dir, os.path.splitext(file_name)[0] + ".png")
        records.append({
            "file_name": os.path.join(root, "images", frame),
            "sem_seg_file_name": label,
            "image_id": f"{scene}_{os.path.splitext(file_name)[0]}",
        })
    require_files(dataset_name, *[r["sem_seg_file_name"] for r in records[:1]],
                  hint="Run datasets/prepare_offset_labels.py scannet to convert the label folders.")
    return records


def _scannet_image(png_name: str) -> str:
    """`scene0000_00__000100.png` -> `scene0000_00/color/000100.jpg`."""
    scene, frame = os.path.splitext(png_name)[0].split("__")
    return os.path.join(scene, "color", frame + ".jpg")


def register_scannet(root: str) -> None:
    base = os.path.join(root, "scannet_frames_25k")
    for name, (label_dir, num_classes) in SCANNET_SEMANTIC.items():
        register(
            name,
            lambda n=name, d=label_dir + CONVERTED_SUFFIX: load_scannet_semantic(n, base, "val", d),
            tasks=("semantic",),
            evaluator_type="sem_seg",
            expected_num_classes=num_classes,
            ignore_label=255,
            image_root=os.path.join(base, "images"),
            stuff_classes=scannet_semantic_classes(num_classes),
        )
    panoptic = {
        "json_file": os.path.join(base, "scannet_panoptic.json"),
        "image_root": os.path.join(base, "images"),
        "panoptic_root": os.path.join(base, "scannet_panoptic"),
        "sem_seg_root": os.path.join(base, "scannet_panoptic_semseg"),
    }
    name = "scannet_21_panoptic_val"
    register(
        name,
        lambda n=name: load_coco_panoptic(n, image_file_fn=_scannet_image, **panoptic),
        tasks=("panoptic", "semantic"),
        evaluator_type="scannet_panoptic_seg",
        expected_num_classes=20,
        ignore_label=255,
        label_divisor=1000,
        panoptic_json=panoptic["json_file"],
        panoptic_root=panoptic["panoptic_root"],
        image_root=panoptic["image_root"],
        sem_seg_root=panoptic["sem_seg_root"],
        **scannet20_panoptic_metadata(),
    )
