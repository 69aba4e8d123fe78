"""Synthetic datasets: deterministic bytes, real formats (pycocotools, panopticapi, lvis), registration."""

import filecmp
import json
import os

import numpy as np
import pycocotools.mask as mask_util
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from lvis import LVIS, LVISResults
from panopticapi.evaluation import pq_compute_single_core
from panopticapi.utils import rgb2id
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from openseed.data.registration.common import DatasetFilesMissing
from openseed.data.registration.synthetic import register_synthetic_datasets
from openseed.data.synthetic import (
    BOX_THINGS,
    PANOPTIC_THINGS,
    ZEROSHOT_THINGS,
    ensure_synthetic_datasets,
    generate_synthetic_datasets,
    read_manifest,
)
from openseed.vocabulary import Vocabulary


def _all_files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files)


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = generate_synthetic_datasets(str(tmp_path / "a"), seed=5, num_train=2, num_val=1)
    b = generate_synthetic_datasets(str(tmp_path / "b"), seed=5, num_train=2, num_val=1)
    c = generate_synthetic_datasets(str(tmp_path / "c"), seed=6, num_train=2, num_val=1)
    files = _all_files(a)
    assert files == _all_files(b) and len(files) > 30
    _, mismatch, errors = filecmp.cmpfiles(a, b, files, shallow=False)
    assert mismatch == [] and errors == []
    _, mismatch_c, _ = filecmp.cmpfiles(a, c, [f for f in files if f.endswith(".jpg")], shallow=False)
    assert mismatch_c  # another seed draws other scenes


def test_vocabulary_split_is_zero_shot():
    panoptic, boxes, zeroshot = ({t.name for t in group} for group in (PANOPTIC_THINGS, BOX_THINGS, ZEROSHOT_THINGS))
    assert len(panoptic) == 8 and len(boxes) == 4 and len(zeroshot) == 4
    assert not (panoptic & boxes) and not (zeroshot & (panoptic | boxes))
    seen_words = {w for name in panoptic | boxes for w in name.split()}
    assert all(set(name.split()) <= seen_words for name in zeroshot)  # compositional: every word was seen
    for group in (BOX_THINGS, ZEROSHOT_THINGS):  # colour alone and shape alone identify a class
        assert len({t.colour for t in group}) == 4 and len({t.shape for t in group}) == 4


def test_panoptic_png_semantic_and_instances_agree(tiny_synthetic):
    num_val = read_manifest(tiny_synthetic)["num_val"]
    base = os.path.join(tiny_synthetic, "panoptic", "val")
    with open(os.path.join(base, "panoptic.json")) as f:
        panoptic = json.load(f)
    coco = COCO(os.path.join(base, "instances.json"))
    contiguous = {c["id"]: i for i, c in enumerate(panoptic["categories"])}
    isthing = {c["id"]: c["isthing"] for c in panoptic["categories"]}
    assert len(panoptic["annotations"]) == num_val
    for ann in panoptic["annotations"]:
        ids = rgb2id(np.asarray(Image.open(os.path.join(base, "panoptic", ann["file_name"])).convert("RGB")))
        semantic = np.asarray(Image.open(os.path.join(base, "semantic", ann["file_name"])))
        image = coco.imgs[ann["image_id"]]
        assert ids.shape == (image["height"], image["width"])
        assert set(np.unique(ids)) == {s["id"] for s in ann["segments_info"]}  # every pixel labelled, no extras
        instance_masks = sorted(mask_util.decode(a["segmentation"]).sum() for a in coco.imgToAnns[ann["image_id"]])
        thing_areas = sorted(s["area"] for s in ann["segments_info"] if isthing[s["category_id"]])
        assert instance_masks == thing_areas and len(thing_areas) >= 1
        for s in ann["segments_info"]:
            mask = ids == s["id"]
            assert mask.sum() == s["area"]
            ys, xs = np.nonzero(mask)
            assert s["bbox"] == [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]
            assert (semantic[mask] == contiguous[s["category_id"]]).all()


def test_panoptic_gt_against_itself_gives_pq_100(tiny_synthetic):
    base = os.path.join(tiny_synthetic, "panoptic", "val")
    with open(os.path.join(base, "panoptic.json")) as f:
        panoptic = json.load(f)
    categories = {c["id"]: c for c in panoptic["categories"]}
    pairs = [(a, a) for a in panoptic["annotations"]]
    folder = os.path.join(base, "panoptic")
    stat = pq_compute_single_core(0, pairs, folder, folder, categories)
    results, _ = stat.pq_average(categories, isthing=None)
    assert results["pq"] == pytest.approx(1.0)


@pytest.mark.parametrize("json_rel,iou_types", [
    ("zeroshot/val/instances.json", ("bbox", "segm")),
    ("boxes/val/instances_masks.json", ("bbox", "segm")),
    ("boxes/val/instances.json", ("bbox",)),
    ("odinw/val/instances.json", ("bbox",)),
])
def test_instance_jsons_evaluate_to_ap_100_with_pycocotools(tiny_synthetic, json_rel, iou_types):
    gt = COCO(os.path.join(tiny_synthetic, json_rel))
    detections = [dict(a, score=1.0) for a in gt.dataset["annotations"]]
    for iou_type in iou_types:
        evaluator = COCOeval(gt, gt.loadRes(detections), iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
        assert evaluator.stats[0] == pytest.approx(1.0)


def test_lvis_json_loads_with_lvis_api(tiny_synthetic):
    gt = LVIS(os.path.join(tiny_synthetic, "lvis", "val", "lvis.json"))
    assert {c["frequency"] for c in gt.dataset["categories"]} == {"f", "c", "r"}
    image = gt.dataset["images"][0]
    present = {a["category_id"] for a in gt.img_ann_map[image["id"]]}
    assert present and set(image["neg_category_ids"]) == set(gt.get_cat_ids()) - present  # exhaustive labels
    for ann in gt.dataset["annotations"]:
        mask = gt.ann_to_mask(ann)  # polygons rasterise to about the drawn area
        assert abs(int(mask.sum()) - ann["area"]) <= 0.15 * ann["area"]
    results = LVISResults(gt, [dict(a, score=1.0) for a in gt.dataset["annotations"]])
    assert len(results.dataset["annotations"]) == len(gt.dataset["annotations"])


def test_registered_sets_load_with_vocabularies(tiny_synthetic):
    manifest = read_manifest(tiny_synthetic)
    num_train, num_val = manifest["num_train"], manifest["num_val"]
    expected = {"tsyn_panoptic_train": (num_train, 12, 8), "tsyn_boxes_train": (num_train, 4, 4),
                "tsyn_boxes_val_masks": (num_val, 4, 4), "tsyn_zeroshot_val": (num_val, 4, 4),
                "tsyn_ade_val": (num_val, 16, 12), "tsyn_lvis_val": (num_val, 16, 16),
                "tsyn_odinw_val": (num_val, 4, 4)}
    for name, (count, classes, things) in expected.items():
        records = DatasetCatalog.get(name)
        vocabulary = Vocabulary.from_metadata(MetadataCatalog.get(name))
        assert len(records) == count and len(vocabulary) == classes and sum(vocabulary.is_thing) == things
        assert all(os.path.isfile(r["file_name"]) for r in records)
    zeroshot = Vocabulary.from_metadata(MetadataCatalog.get("tsyn_zeroshot_val"))
    assert set(zeroshot.names) == {t.name for t in ZEROSHOT_THINGS}
    ade = Vocabulary.from_metadata(MetadataCatalog.get("tsyn_ade_val"))
    assert ade.names[0] == "sky" and not ade.is_thing[0] and ade.is_thing[1]  # things and stuff interleaved
    record = DatasetCatalog.get("tsyn_panoptic_val")[0]
    assert os.path.isfile(record["pan_seg_file_name"]) and os.path.isfile(record["sem_seg_file_name"])
    meta = MetadataCatalog.get("tsyn_panoptic_val")
    assert meta.evaluator_type == "coco_panoptic_seg" and os.path.isfile(meta.panoptic_json)
    assert os.path.isfile(meta.json_file) and os.path.isdir(meta.sem_seg_root) and meta.ignore_label == 255


def test_missing_files_fail_with_a_pointer_to_the_generator(tmp_path):
    root = str(tmp_path / "absent")
    register_synthetic_datasets(root, prefix="tmissing")
    with pytest.raises(DatasetFilesMissing, match="python -m openseed.data.synthetic") as info:
        DatasetCatalog.get("tmissing_boxes_train")
    assert os.path.join(root, "boxes", "train", "instances.json") in str(info.value)


def test_ensure_generates_once_and_refuses_foreign_folders(tmp_path):
    root = str(tmp_path / "synthetic")
    ensure_synthetic_datasets(root, num_train=1, num_val=1)
    manifest = os.path.join(root, "manifest.json")
    stamp = os.stat(manifest).st_mtime_ns
    ensure_synthetic_datasets(root, num_train=1, num_val=1)
    assert os.stat(manifest).st_mtime_ns == stamp
    assert read_manifest(root)["num_train"] == 1
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="refusing"):
        ensure_synthetic_datasets(str(foreign), num_train=1, num_val=1)
    assert (foreign / "precious.txt").read_text() == "keep me"
