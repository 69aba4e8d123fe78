"""The ablation benchmark (synthetic family "ablation"): both discrepancies, evaluation-only masks, determinism."""

import filecmp
import json
import os

import numpy as np
import pycocotools.mask as mask_util
import pytest
from detectron2.data import DatasetCatalog
from panopticapi.utils import rgb2id
from PIL import Image

from openseed.data.registration.synthetic import register_synthetic_datasets
from openseed.data.synthetic import generate_synthetic_datasets, read_manifest
from openseed.data.synthetic.ablation import ABLATION_BOX_THINGS, ablation_sets
from openseed.data.synthetic.classes import PANOPTIC_THINGS, ZEROSHOT_THINGS


@pytest.fixture(scope="module")
def ablation_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ablation") / "synthetic_ablation"
    return generate_synthetic_datasets(str(root), seed=1, num_train=8, num_val=5, family="ablation")


def _load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def test_box_only_classes_have_boxes_but_no_masks_in_training(ablation_root):
    train = _load(os.path.join(ablation_root, "boxes", "train", "instances.json"))
    assert {c["name"] for c in train["categories"]} == {t.name for t in ABLATION_BOX_THINGS}
    assert train["annotations"] and all("segmentation" not in a for a in train["annotations"])
    panoptic_names = {c["name"] for c in _load(os.path.join(ablation_root, "panoptic", "train", "panoptic.json"))
                      ["categories"]}
    assert not panoptic_names & {t.name for t in ABLATION_BOX_THINGS}


def test_box_only_val_masks_are_true_masks_inside_their_boxes(ablation_root):
    boxes = _load(os.path.join(ablation_root, "boxes", "val", "instances.json"))
    masks = _load(os.path.join(ablation_root, "boxes", "val", "instances_masks.json"))
    assert all("segmentation" not in a for a in boxes["annotations"])
    assert [a["bbox"] for a in masks["annotations"]] == [a["bbox"] for a in boxes["annotations"]]
    for ann in masks["annotations"]:
        mask = mask_util.decode(ann["segmentation"]).astype(bool)
        x, y, w, h = (int(v) for v in ann["bbox"])
        assert mask.sum() == ann["area"] == mask[y:y + h, x:x + w].sum()


def test_box_only_shapes_are_new_and_not_box_like(ablation_root):
    assert not {t.shape for t in ABLATION_BOX_THINGS} & {t.shape for t in PANOPTIC_THINGS + ZEROSHOT_THINGS}
    masks = _load(os.path.join(ablation_root, "boxes", "val", "instances_masks.json"))
    fills = {}
    for ann in masks["annotations"]:
        fills.setdefault(ann["category_id"], []).append(ann["area"] / (ann["bbox"][2] * ann["bbox"][3]))
    names = {c["id"]: c["name"] for c in masks["categories"]}
    assert len(fills) >= 3
    for category, values in fills.items():
        assert max(values) < 0.7, (names[category], values)  # a square fills 1.0 of its box, a circle 0.785
    ring = [a for a in masks["annotations"] if names[a["category_id"]].endswith("ring")]
    holes = [_has_hole(mask_util.decode(a["segmentation"]).astype(bool)) for a in ring]
    assert holes and all(holes)


def _has_hole(mask):
    """Whether some background pixel is not connected to the image border (4-connectivity flood fill)."""
    import cv2

    background = (~mask).astype(np.uint8)
    padded = np.pad(background, 1, constant_values=1)
    flood = padded.copy()
    cv2.floodFill(flood, None, (0, 0), 2)
    return bool((flood == 1).any())


def test_stuff_covers_most_of_every_panoptic_image(ablation_root):
    base = os.path.join(ablation_root, "panoptic", "train")
    panoptic = _load(os.path.join(base, "panoptic.json"))
    isthing = {c["id"]: c["isthing"] for c in panoptic["categories"]}
    shares = []
    for ann in panoptic["annotations"]:
        ids = rgb2id(np.asarray(Image.open(os.path.join(base, "panoptic", ann["file_name"]))))
        stuff = sum(s["area"] for s in ann["segments_info"] if not isthing[s["category_id"]])
        assert stuff == sum(int((ids == s["id"]).sum()) for s in ann["segments_info"] if not isthing[s["category_id"]])
        shares.append(stuff / ids.size)
        assert sum(not isthing[s["category_id"]] for s in ann["segments_info"]) >= 1
    assert min(shares) > 0.6 and np.mean(shares) > 0.8


def test_zero_shot_names_as_in_the_demo(ablation_root):
    zeroshot = _load(os.path.join(ablation_root, "zeroshot", "val", "instances.json"))
    assert [c["name"] for c in zeroshot["categories"]] == [t.name for t in ZEROSHOT_THINGS]
    assert all("segmentation" in a for a in zeroshot["annotations"])


def test_same_seed_same_bytes_other_seed_differs(ablation_root, tmp_path):
    again = generate_synthetic_datasets(str(tmp_path / "a"), seed=1, num_train=8, num_val=5, family="ablation")
    other = generate_synthetic_datasets(str(tmp_path / "b"), seed=2, num_train=8, num_val=5, family="ablation")
    files = sorted(os.path.relpath(os.path.join(d, f), ablation_root) for d, _, fs in os.walk(ablation_root)
                   for f in fs)
    assert len(files) > 60
    _, mismatch, errors = filecmp.cmpfiles(ablation_root, again, files, shallow=False)
    assert mismatch == [] and errors == []
    _, differ, _ = filecmp.cmpfiles(ablation_root, other, [f for f in files if f.endswith(".jpg")], shallow=False)
    assert differ
    assert read_manifest(ablation_root)["family"] == "ablation"


def test_registered_under_the_family_prefix(ablation_root):
    names = register_synthetic_datasets(ablation_root, prefix="tabl", family="ablation")
    assert names == [f"tabl_{spec.key}" for spec, _ in ablation_sets()[:4]] + ["tabl_boxes_val_masks",
                                                                                 "tabl_zeroshot_val"]
    records = DatasetCatalog.get("tabl_boxes_train")
    assert len(records) == 8 and all("segmentation" not in a for r in records for a in r["annotations"])
    assert all("segmentation" in a for r in DatasetCatalog.get("tabl_boxes_val_masks") for a in r["annotations"])
    assert len(DatasetCatalog.get("tabl_panoptic_val")) == 5
