"""Custom COCO-format jsons (boxes, polygons/RLE masks, panoptic) registered from DATASETS.CUSTOM or a call."""

import json
import logging

import numpy as np
import pycocotools.mask as mask_util
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

from openseed.config import get_cfg
from openseed.data.mappers import build_mapper
from openseed.data.registration.custom_coco import (
    parse_custom_entry,
    register_coco_json,
    register_custom_datasets,
)
from openseed.vocabulary import Vocabulary

H, W = 40, 60


@pytest.fixture
def images(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    for i in (1, 2):
        Image.fromarray(np.full((H, W, 3), 40 * i, dtype=np.uint8)).save(root / f"{i}.jpg")
    return root


def write_json(path, annotations, categories):
    images = [{"id": i, "file_name": f"{i}.jpg", "height": H, "width": W} for i in (1, 2)]
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return str(path)


def rle_square():
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[5:15, 20:40] = 1
    rle = mask_util.encode(np.asfortranarray(mask))
    return {"size": [H, W], "counts": rle["counts"].decode("ascii")}


def test_boxes_json_from_config_entry(tmp_path, images):
    categories = [{"id": 0, "name": "fruits", "supercategory": "none"},  # Roboflow parent, dropped
                  {"id": 3, "name": "pear", "supercategory": "fruits"},
                  {"id": 1, "name": "apple", "supercategory": "fruits"}]
    annotations = [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [10, 5, 20, 10], "area": 200, "iscrowd": 0},
                   {"id": 2, "image_id": 2, "category_id": 1, "bbox": [0, 0, 5, 5], "area": 25, "iscrowd": 0}]
    json_file = write_json(tmp_path / "boxes.json", annotations, categories)
    cfg = get_cfg()
    cfg.DATASETS.CUSTOM = (f"tcustom_boxes:{json_file}:{images}",)
    assert register_custom_datasets(cfg) == ["tcustom_boxes"]
    meta = MetadataCatalog.get("tcustom_boxes")
    assert Vocabulary.from_metadata(meta).names == ("apple", "pear")  # sorted by id
    assert meta.evaluator_type == "coco" and meta.tasks == ("detection",)
    assert meta.train_task == "det" and meta.train_mapper == "objects365_lsj"
    records = DatasetCatalog.get("tcustom_boxes")
    assert [[a["category_id"] for a in r["annotations"]] for r in records] == [[1], [0]]
    cfg.INPUT.IMAGE_SIZE, cfg.INPUT.MIN_SCALE, cfg.INPUT.MAX_SCALE, cfg.INPUT.RANDOM_FLIP = 60, 1.0, 1.0, "none"
    out = build_mapper(meta.train_mapper, cfg, dataset_name="tcustom_boxes")(records[0])
    assert out["instances"].gt_boxes.tensor.tolist() == [[10, 5, 30, 15]] and out["instances"].gt_classes.tolist() == [1]


def test_mask_json_polygons_and_rle(tmp_path, images, caplog):
    categories = [{"id": 1, "name": "cup"}, {"id": 2, "name": "plate"}]
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [20, 5, 20, 10], "area": 200, "iscrowd": 0,
         "segmentation": rle_square()},
        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [0, 20, 10, 10], "area": 100, "iscrowd": 0,
         "segmentation": [[0, 20, 10, 20, 10, 30, 0, 30]]},
        {"id": 3, "image_id": 2, "category_id": 9, "bbox": [0, 0, 4, 4], "area": 16, "iscrowd": 0},
    ]
    json_file = write_json(tmp_path / "masks.json", annotations, categories)
    with caplog.at_level(logging.WARNING):
        register_coco_json("tcustom_masks", json_file, str(images))
    assert "1 annotations" in caplog.text and "9" in caplog.text  # unknown category id reported
    meta = MetadataCatalog.get("tcustom_masks")
    assert meta.tasks == ("instance",) and meta.train_mapper == "coco_instance_lsj" and meta.train_task == "seg"
    cfg = get_cfg()
    cfg.INPUT.IMAGE_SIZE, cfg.INPUT.MIN_SCALE, cfg.INPUT.MAX_SCALE, cfg.INPUT.RANDOM_FLIP = 60, 1.0, 1.0, "none"
    record = DatasetCatalog.get("tcustom_masks")[0]
    instances = build_mapper("coco_instance_lsj", cfg, dataset_name="tcustom_masks")(record)["instances"]
    assert instances.gt_classes.tolist() == [0, 1]
    assert instances.gt_boxes.tensor.tolist() == [[20, 5, 40, 15], [0, 20, 10, 30]]
    assert instances.gt_masks.sum((1, 2)).tolist() == [200, 100]
    assert register_coco_json("tcustom_masks", json_file, str(images)) == "tcustom_masks"  # idempotent


def test_panoptic_json_with_default_panoptic_root(tmp_path, images):
    png_root = tmp_path / "pano"
    png_root.mkdir()
    ids = np.full((H, W), 5, dtype=np.uint8)
    ids[10:20, 10:30] = 7
    for i in (1, 2):
        Image.fromarray(np.stack([ids, 0 * ids, 0 * ids], -1)).save(png_root / f"{i}.png")
    categories = [{"id": 1, "name": "dog", "isthing": 1}, {"id": 2, "name": "grass", "isthing": 0}]
    annotations = [{"image_id": i, "file_name": f"{i}.png",
                    "segments_info": [{"id": 7, "category_id": 1, "iscrowd": 0}, {"id": 5, "category_id": 2}]}
                   for i in (1, 2)]
    json_file = write_json(tmp_path / "pano.json", annotations, categories)
    cfg = get_cfg()
    cfg.DATASETS.CUSTOM = (f"tcustom_pano:{json_file}:{images}",)
    register_custom_datasets(cfg)
    meta = MetadataCatalog.get("tcustom_pano")
    vocabulary = Vocabulary.from_metadata(meta)
    assert vocabulary.names == ("dog", "grass") and vocabulary.is_thing == (True, False)
    assert meta.evaluator_type == "coco_panoptic_seg" and meta.panoptic_root == str(png_root)
    cfg.INPUT.IMAGE_SIZE, cfg.INPUT.MIN_SCALE, cfg.INPUT.MAX_SCALE, cfg.INPUT.RANDOM_FLIP = 60, 1.0, 1.0, "none"
    record = DatasetCatalog.get("tcustom_pano")[0]
    instances = build_mapper("coco_panoptic_lsj", cfg, dataset_name="tcustom_pano")(record)["instances"]
    assert instances.gt_classes.tolist() == [0, 1] and instances.gt_boxes.tensor[0].tolist() == [10, 10, 30, 20]


def test_bad_entries_and_files(tmp_path):
    with pytest.raises(ValueError, match="must be 'name:json_file:image_root'"):
        parse_custom_entry("only:two")
    assert parse_custom_entry("a:b.json:imgs") == ("a", "b.json", "imgs", None)
    with pytest.raises(FileNotFoundError, match="missing.json not found"):
        register_coco_json("tcustom_missing", str(tmp_path / "missing.json"), str(tmp_path))
    (tmp_path / "bad.json").write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match="not a COCO-format json"):
        register_coco_json("tcustom_bad", str(tmp_path / "bad.json"), str(tmp_path))
    with pytest.raises(ValueError, match="already registered"):
        (tmp_path / "ok.json").write_text(json.dumps({"images": [], "annotations": [],
                                                      "categories": [{"id": 1, "name": "x"}]}))
        register_coco_json("coco_2017_val", str(tmp_path / "ok.json"), str(tmp_path))
