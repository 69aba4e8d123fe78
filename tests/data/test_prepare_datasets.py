"""`datasets/prepare_*.py` on tiny fabricated inputs, checked through the registered loaders where possible."""

import ast
import json
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
import pytest
from detectron2.data import DatasetCatalog
from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES
from PIL import Image

import openseed.data  # noqa: F401  (registers the datasets)
from openseed.data.registration.builtin import register_all_builtin
from tests.tool_loader import load_script

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def data_root(tmp_path):
    register_all_builtin(str(tmp_path))
    yield tmp_path
    register_all_builtin()


def _save_panoptic_png(path, segment_ids):
    rgb = np.stack([segment_ids % 256, segment_ids // 256 % 256, segment_ids // 65536], axis=-1).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)


def test_panoptic_to_semantic_round_trip_through_the_registered_dataset(data_root):
    prepare = load_script("datasets/prepare_panoptic_semantic.py")
    coco = data_root / "coco"
    (coco / "val2017").mkdir(parents=True)
    segment_ids = np.array([[0, 5, 5, 300], [0, 5, 300, 300], [7, 7, 7, 300]])
    _save_panoptic_png(coco / "panoptic_val2017" / "000000000001.png", segment_ids)
    segments = [{"id": 5, "category_id": 18, "iscrowd": 0},  # dog -> contiguous 16
                {"id": 300, "category_id": 184, "iscrowd": 0},  # tree-merged
                {"id": 7, "category_id": 1, "iscrowd": 1}]  # crowd person: labelled too
    (coco / "annotations").mkdir()
    (coco / "annotations" / "panoptic_val2017.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "000000000001.jpg", "height": 3, "width": 4}],
        "annotations": [{"image_id": 1, "file_name": "000000000001.png", "segments_info": segments}],
        "categories": []}))
    assert prepare.convert_dataset("coco_2017_val_panoptic_with_sem_seg") == 1
    (record,) = DatasetCatalog.get("coco_2017_val_panoptic_with_sem_seg")
    semantic = np.asarray(Image.open(record["sem_seg_file_name"]))
    tree = [c["id"] for c in COCO_CATEGORIES].index(184)
    expected = np.array([[255, 16, 16, tree], [255, 16, tree, tree], [0, 0, 0, tree]], dtype=np.uint8)
    np.testing.assert_array_equal(semantic, expected)


def test_ade20k_prepare_then_load_panoptic_instance_and_semantic(data_root):
    prepare = load_script("datasets/prepare_ade20k.py")
    root = data_root / "ADEChallengeData2016"
    for folder in ("images", "annotations", "annotations_instance"):
        (root / folder / "validation").mkdir(parents=True)
    Image.new("RGB", (5, 4)).save(root / "images" / "validation" / "ADE_val_00000001.jpg")
    semantic = np.array([[1, 1, 8, 8, 0], [1, 1, 8, 8, 0], [4, 4, 4, 4, 4], [4, 4, 8, 4, 4]], dtype=np.uint8)
    Image.fromarray(semantic).save(root / "annotations" / "validation" / "ADE_val_00000001.png")
    instance = np.zeros((4, 5, 3), dtype=np.uint8)
    instance[0:2, 2:4, 1] = 1  # a bed (semantic 8 -> class 7, a thing)
    instance[3, 0:2, 1] = 2  # an "instance" over floor (stuff): dropped
    Image.fromarray(instance).save(root / "annotations_instance" / "validation" / "ADE_val_00000001.png")

    counts = prepare.convert_split(str(root), "val")
    assert counts == {"images": 1, "segments": 3, "instances": 1, "dropped_instances": 1}

    (panoptic,) = DatasetCatalog.get("ade20k_panoptic_val")
    pan = np.asarray(Image.open(panoptic["pan_seg_file_name"])).astype(np.int64)
    pan_ids = pan[..., 0] + 256 * pan[..., 1] + 65536 * pan[..., 2]
    by_id = {s["id"]: s for s in panoptic["segments_info"]}
    assert by_id[pan_ids[0, 2]]["category_id"] == 7 and by_id[pan_ids[0, 2]]["isthing"] is True
    assert by_id[pan_ids[0, 0]]["category_id"] == 0 and by_id[pan_ids[0, 0]]["isthing"] is False  # wall
    assert pan_ids[3, 2] == 0 and pan_ids[0, 4] == 0  # bed pixel without an instance, "other": void
    assert by_id[pan_ids[3, 0]]["category_id"] == 3  # floor keeps the dropped instance's pixels
    (sem,) = DatasetCatalog.get("ade20k_sem_seg_val")
    np.testing.assert_array_equal(np.asarray(Image.open(sem["sem_seg_file_name"])),
                                  (semantic.astype(np.int32) - 1).astype(np.uint8))
    (inst,) = DatasetCatalog.get("ade20k_instance_val")
    (bed,) = inst["annotations"]
    assert (bed["category_id"], bed["bbox"], inst["image_id"]) == (0, [2, 0, 2, 2], panoptic["image_id"])
    np.testing.assert_array_equal(mask_util.decode(bed["segmentation"]), instance[..., 1] == 1)


def test_lvis_minival_selection():
    prepare = load_script("datasets/prepare_lvis.py")
    data = {"images": [{"id": 1, "coco_url": "http://images.cocodataset.org/val2017/01.jpg"},
                       {"id": 2, "coco_url": "http://images.cocodataset.org/train2017/02.jpg"},
                       {"id": 3, "file_name": "val2017/03.jpg"}],
            "annotations": [{"id": 10, "image_id": 1}, {"id": 11, "image_id": 2}, {"id": 12, "image_id": 3}],
            "categories": [{"id": 1}]}
    minival = prepare.select_minival(data)
    assert [i["id"] for i in minival["images"]] == [1, 3] and [a["id"] for a in minival["annotations"]] == [10, 12]
    assert minival["images"][0]["file_name"] == "val2017/01.jpg"
    assert minival["images"][1]["coco_url"] == "http://images.cocodataset.org/val2017/03.jpg"
    assert [i["id"] for i in prepare.select_minival(data, {2})["images"]] == [2]
    with pytest.raises(ValueError, match="not in the LVIS json"):
        prepare.select_minival(data, {2, 99})


def test_offset_labels_then_load_sunrgbd(data_root):
    prepare = load_script("datasets/prepare_offset_labels.py")
    np.testing.assert_array_equal(prepare.shift_labels(np.array([[0, 1, 37]])), [[255, 0, 36]])
    base = data_root / "sun_rgbd"
    (base / "image" / "test").mkdir(parents=True)
    (base / "label37" / "test").mkdir(parents=True)
    Image.new("RGB", (2, 2)).save(base / "image" / "test" / "img-000001.jpg")
    Image.fromarray(np.array([[0, 5], [37, 1]], dtype=np.uint8)).save(base / "label37" / "test" / "img-000001.png")
    assert prepare.convert("sunrgbd", str(data_root)) == {"label37": 1}
    (record,) = DatasetCatalog.get("sunrgbd_37_val_seg")
    np.testing.assert_array_equal(np.asarray(Image.open(record["sem_seg_file_name"])), [[255, 4], [36, 0]])


def test_cityscapes_train_ids(tmp_path):
    prepare = load_script("datasets/prepare_cityscapes.py")
    label_file = tmp_path / "gtFine" / "val" / "lindau" / "lindau_000000_000019_gtFine_labelIds.png"
    label_file.parent.mkdir(parents=True)
    Image.fromarray(np.array([[7, 26, 0], [33, 24, 11]], dtype=np.uint8)).save(label_file)
    assert prepare.convert(str(tmp_path)) == 1
    train_ids = np.asarray(Image.open(str(label_file).replace("_labelIds", "_labelTrainIds")))
    np.testing.assert_array_equal(train_ids, [[0, 13, 255], [18, 11, 2]])


def test_vocab_extraction_from_config_source():
    prepare = load_script("datasets/prepare_vocab.py")
    source = ast.parse(
        "data_root = 'data/odinw/'\n"
        "class_name = ('fish', 'shark')\n"
        "_data_root = data_root + 'Aquarium/raw/'\n"
        "dataset_Aquarium = dict(type='CocoDataset', ann_file='valid/a.json', data_prefix=dict(img='valid/'))\n"
        "class_name = ('pistol', )\n"
        "_data_root = data_root + 'pistols/export/'\n"
        "dataset_pistols = dict(ann_file='val_a.json', data_prefix=dict(img=''))\n"
        "class Objects(object):\n"
        "    METAINFO = {'classes': ('Person', 'Formula 1 '), 'palette': PALETTE}\n")
    sets = prepare.odinw_sets(source)
    assert sets == [
        {"name": "Aquarium", "root": "Aquarium/raw/", "ann_file": "valid/a.json", "image_dir": "valid/",
         "classes": ["fish", "shark"]},
        {"name": "pistols", "root": "pistols/export/", "ann_file": "val_a.json", "image_dir": "", "classes": ["pistol"]},
    ]
    assert prepare.class_metainfo(source, "Objects") == {"classes": ("Person", "Formula 1 ")}
