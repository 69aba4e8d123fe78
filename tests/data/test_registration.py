"""Registration of the real datasets: names, vocabularies and metadata, loaders on fabricated files, missing files."""

import json

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode
from PIL import Image

import openseed.data  # noqa: F401  (registers the datasets)
from openseed.data.registration.builtin import builtin_dataset_names, register_all_builtin
from openseed.data.registration.cityscapes import instances_from_instance_ids
from openseed.data.registration.common import TASKS, DatasetFilesMissing, read_vocab_file, resolve_metadata
from openseed.data.registration.suites import SUITE_NAMES, suite_datasets
from openseed.vocabulary import Vocabulary

# name -> (number of classes, number of thing classes)
EXPECTED = {
    "coco_2017_train_panoptic": (133, 80),
    "coco_2017_val_panoptic_with_sem_seg": (133, 80),
    "coco_2017_val": (80, 80),
    "objects365_v1_train": (365, 365),
    "objects365_v2_train": (365, 365),
    "objects365_v2_val": (365, 365),
    "ade20k_panoptic_val": (150, 100),
    "ade20k_instance_val": (100, 100),
    "ade20k_sem_seg_val": (150, 0),
    "lvis_v1_minival": (1203, 1203),
    "lvis_v1_val": (1203, 1203),
    "cityscapes_fine_panoptic_val": (19, 8),
    "cityscapes_fine_instance_seg_val": (8, 8),
    "cityscapes_fine_sem_seg_val": (19, 0),
    "bdd10k_val_sem_seg": (19, 0),
    "bdd10k_40_panoptic_val": (40, 10),
    "scannet_21_panoptic_val": (20, 18),
    "scannet_21_val_seg": (20, 0),
    "scannet_38_val_seg": (37, 0),
    "scannet_41_val_seg": (40, 0),
    "sunrgbd_37_val_seg": (37, 0),
    "pascal_context_59_sem_seg_val": (59, 0),
    "odinw13_Aquarium_val": (7, 7),
    "odinw35_ChessPieces_val": (12, 12),
    "odinw35_boggleBoards_val": (36, 36),
}
READ_FROM_FILES = {"ade20k_full_sem_seg_val": 847, "pascal_context_459_sem_seg_val": 459}


@pytest.fixture
def data_root(tmp_path):
    """Every dataset registered under an empty tmp root; the default registration is restored afterwards."""
    register_all_builtin(str(tmp_path))
    yield tmp_path
    register_all_builtin()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shipped_vocabulary_sizes(name):
    meta = MetadataCatalog.get(name)
    vocabulary = Vocabulary.from_metadata(meta)
    assert (len(vocabulary), sum(vocabulary.is_thing)) == EXPECTED[name]
    assert meta.expected_num_classes == EXPECTED[name][0]
    assert meta.vocabulary_source == "shipped"


def test_every_registered_name_has_consistent_metadata():
    names = builtin_dataset_names()
    assert len(names) == len(set(names)) > 150
    for name in names:
        assert name in DatasetCatalog.list()
        meta = MetadataCatalog.get(name)
        assert meta.tasks and set(meta.tasks) <= set(TASKS), name
        assert isinstance(meta.evaluator_type, str), name
        if meta.vocabulary_source == "shipped":
            assert len(Vocabulary.from_metadata(meta)) == meta.expected_num_classes, name
        else:
            assert not getattr(meta, "thing_classes", None) and not getattr(meta, "stuff_classes", None), name


def test_task_switches_follow_the_spec_table():
    tasks = {name: set(MetadataCatalog.get(name).tasks) for name in builtin_dataset_names()}
    assert tasks["coco_2017_val_panoptic_with_sem_seg"] == {"panoptic", "instance", "semantic"}
    assert tasks["ade20k_panoptic_val"] == {"panoptic", "instance", "semantic"}
    assert tasks["cityscapes_fine_panoptic_val"] == {"panoptic", "semantic"}
    assert tasks["cityscapes_fine_instance_seg_val"] == {"instance"}
    assert tasks["bdd10k_40_panoptic_val"] == tasks["scannet_21_panoptic_val"] == {"panoptic", "semantic"}
    assert tasks["seginw_Airplane-Parts_val"] == tasks["lvis_v1_minival"] == {"instance"}
    assert tasks["odinw35_PKLot_val"] == tasks["objects365_v2_val"] == {"detection"}
    for name in ("ade20k_full_sem_seg_val", "sunrgbd_37_val_seg", "scannet_41_val_seg", "bdd10k_val_sem_seg"):
        assert tasks[name] == {"semantic"}


def test_ignore_labels_and_expected_counts_of_file_vocabularies():
    for name, count in READ_FROM_FILES.items():
        meta = MetadataCatalog.get(name)
        assert (meta.expected_num_classes, meta.vocabulary_source, meta.ignore_label) == (count, "annotations", 65535)
    assert MetadataCatalog.get("ade20k_sem_seg_val").ignore_label == 255


def test_suites():
    assert len(suite_datasets("odinw13")) == 13 and len(suite_datasets("odinw35")) == 35
    assert len(suite_datasets("seginw")) == 25
    assert suite_datasets("seginw")[0] == "seginw_Airplane-Parts_val"
    assert "odinw13_Aquarium_val" in suite_datasets("odinw13")
    registered = set(builtin_dataset_names())
    for suite in SUITE_NAMES:
        assert set(suite_datasets(suite)) <= registered, suite
    assert "lvis_v1_minival" in suite_datasets("zeroshot")
    with pytest.raises(KeyError, match="odinw13"):
        suite_datasets("odinw-13")


def test_shipped_vocabulary_files():
    for version in ("v1", "v2"):
        names = read_vocab_file(f"objects365_{version}.json")["classes"]
        assert len(names) == len(set(names)) == 365 and all(n == n.strip() for n in names)
    assert "Moniter/TV" in read_vocab_file("objects365_v2.json")["classes"]
    ade = read_vocab_file("ade20k_150.json")["categories"]
    assert [c["id"] for c in ade] == list(range(150)) and sum(c["isthing"] for c in ade) == 100
    odinw = read_vocab_file("odinw.json")
    assert (len(odinw["odinw13"]), len(odinw["odinw35"])) == (13, 35)


@pytest.mark.parametrize("name, expected_path", [
    ("coco_2017_val_panoptic_with_sem_seg", "coco/annotations/panoptic_val2017.json"),
    ("coco_2017_train_panoptic", "coco/annotations/panoptic_train2017.json"),
    ("objects365_v1_val", "Objects365/v1/annotations/objects365_val.json"),
    ("ade20k_instance_train", "ADEChallengeData2016/ade20k_instance_train.json"),
    ("odinw35_boggleBoards_train", "odinw/boggleBoards/416x416AutoOrient/export/train_annotations_without_background.json"),
    ("coco_2017_val", "coco/annotations/instances_val2017.json"),
    ("objects365_v2_train", "Objects365/v2/annotations/zhiyuan_objv2_train.json"),
    ("ade20k_panoptic_val", "ADEChallengeData2016/ade20k_panoptic_val.json"),
    ("ade20k_full_sem_seg_val", "ADE20K_2021_17_01/ade20k_full_classes.txt"),
    ("lvis_v1_minival", "lvis/lvis_v1_minival.json"),
    ("odinw13_Aquarium_val", "odinw/Aquarium/Aquarium Combined.v2-raw-1024.coco/valid/annotations_without_background.json"),
    ("seginw_Bottles_val", "seginw/Bottles/valid/_annotations_min1cat.coco.json"),
    ("cityscapes_fine_sem_seg_val", "cityscapes/leftImg8bit/val"),
    ("bdd10k_40_panoptic_val", "bdd100k/labels/pan_seg/meta/coco_val.json"),
    ("scannet_41_val_seg", "scannet_frames_25k/meta/val.txt"),
    ("sunrgbd_37_val_seg", "sun_rgbd/image/test"),
    ("pascal_context_459_sem_seg_val", "pascal_ctx_d2/pascal_context_459_classes.txt"),
])
def test_missing_files_name_the_path_and_the_readme(data_root, name, expected_path):
    with pytest.raises(DatasetFilesMissing) as error:
        DatasetCatalog.get(name)
    message = str(error.value)
    assert str(data_root / expected_path) in message
    assert "datasets/README.md" in message and name in message


def test_file_vocabulary_read_and_count_checked(data_root):
    full = data_root / "ADE20K_2021_17_01"
    (full / "images_detectron2" / "validation").mkdir(parents=True)
    (full / "annotations_detectron2" / "validation").mkdir(parents=True)
    Image.new("RGB", (4, 3)).save(full / "images_detectron2" / "validation" / "a.jpg")
    Image.fromarray(np.full((3, 4), 846, dtype=np.uint16)).save(full / "annotations_detectron2" / "validation" / "a.tif")
    (full / "ade20k_full_classes.txt").write_text("\n".join(f"class {i}" for i in range(847)) + "\n")
    meta = resolve_metadata("ade20k_full_sem_seg_val")
    assert len(Vocabulary.from_metadata(meta)) == 847 and meta.stuff_classes[846] == "class 846"
    records = DatasetCatalog.get("ade20k_full_sem_seg_val")
    assert [r["sem_seg_file_name"] for r in records] == [str(full / "annotations_detectron2/validation/a.tif")]
    register_all_builtin(str(data_root))
    (full / "ade20k_full_classes.txt").write_text("\n".join(f"class {i}" for i in range(846)))
    with pytest.raises(ValueError, match="846 classes, expected 847"):
        DatasetCatalog.get("ade20k_full_sem_seg_val")


def _write_json(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def test_seginw_classes_from_annotations_without_roboflow_parent(data_root):
    valid = data_root / "seginw" / "Bottles" / "valid"
    _write_json(valid / "_annotations_min1cat.coco.json", {
        "categories": [{"id": 0, "name": "bottles", "supercategory": "none"},
                       {"id": 1, "name": "bottle", "supercategory": "bottles"},
                       {"id": 2, "name": "label", "supercategory": "bottles"}],
        "images": [{"id": 5, "file_name": "x.jpg", "height": 10, "width": 20}],
        "annotations": [{"id": 1, "image_id": 5, "category_id": 2, "bbox": [1, 2, 3, 4], "iscrowd": 0,
                         "segmentation": [[1, 2, 4, 2, 4, 6]]}],
    })
    assert resolve_metadata("seginw_Bottles_val").thing_classes == ["bottle", "label"]
    (record,) = DatasetCatalog.get("seginw_Bottles_val")
    assert record["file_name"] == str(valid / "x.jpg") and (record["height"], record["width"]) == (10, 20)
    (ann,) = record["annotations"]
    assert (ann["category_id"], ann["bbox"], ann["bbox_mode"]) == (1, [1, 2, 3, 4], BoxMode.XYWH_ABS)
    assert MetadataCatalog.get("seginw_Bottles_val").thing_dataset_id_to_contiguous_id == {1: 0, 2: 1}


def test_objects365_v2_matches_names_and_patch_folders(data_root):
    classes = read_vocab_file("objects365_v2.json")["classes"]
    categories = [{"id": 400 - i, "name": n + (" " if n == "Formula 1" else "")} for i, n in enumerate(classes)]
    v2 = data_root / "Objects365" / "v2"
    (v2 / "train").mkdir(parents=True)
    _write_json(v2 / "annotations" / "zhiyuan_objv2_train.json", {
        "categories": categories,
        "images": [{"id": 1, "file_name": "images/v2/patch3/objects365_v2_01.jpg", "height": 8, "width": 8}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 400 - classes.index("Formula 1"),
                         "bbox": [0, 0, 2, 2], "iscrowd": 0}],
    })
    (record,) = DatasetCatalog.get("objects365_v2_train")
    assert record["file_name"] == str(v2 / "train" / "patch3" / "objects365_v2_01.jpg")
    assert record["annotations"][0]["category_id"] == classes.index("Formula 1")


def test_odinw_unknown_category_is_an_error(data_root):
    root = data_root / "odinw" / "pothole"
    (root / "valid").mkdir(parents=True)
    _write_json(root / "valid" / "annotations_without_background.json",
                {"categories": [{"id": 1, "name": "crater"}], "images": [], "annotations": []})
    with pytest.raises(ValueError, match="crater"):
        DatasetCatalog.get("odinw13_pothole_val")


def test_coco_panoptic_loader_maps_categories(data_root):
    coco = data_root / "coco"
    for folder in ("val2017", "panoptic_val2017", "panoptic_semseg_val2017"):
        (coco / folder).mkdir(parents=True)
    _write_json(coco / "annotations" / "panoptic_val2017.json", {
        "images": [{"id": 139, "file_name": "000000000139.jpg", "height": 4, "width": 6}],
        "annotations": [{"image_id": 139, "file_name": "000000000139.png", "segments_info": [
            {"id": 3, "category_id": 1, "iscrowd": 0, "area": 2, "bbox": [0, 0, 1, 2]},
            {"id": 9, "category_id": 193, "iscrowd": 0, "area": 5, "bbox": [1, 0, 5, 1]}]}],
        "categories": [],
    })
    (record,) = DatasetCatalog.get("coco_2017_val_panoptic_with_sem_seg")
    assert record["file_name"] == str(coco / "val2017" / "000000000139.jpg")
    assert record["sem_seg_file_name"] == str(coco / "panoptic_semseg_val2017" / "000000000139.png")
    person, grass = record["segments_info"]
    assert (person["category_id"], person["isthing"]) == (0, True)
    assert grass["isthing"] is False and MetadataCatalog.get("coco_2017_val").thing_classes[0] == "person"
    assert MetadataCatalog.get("coco_2017_val_panoptic").stuff_classes[grass["category_id"]] == "grass-merged"


def test_lvis_paths_from_coco_url(data_root):
    (data_root / "coco" / "val2017").mkdir(parents=True)
    _write_json(data_root / "lvis" / "lvis_v1_minival.json", {
        "categories": [], "images": [{"id": 7, "coco_url": "http://images.cocodataset.org/val2017/0007.jpg",
                                      "height": 5, "width": 5, "neg_category_ids": [3]}],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 1203, "bbox": [0, 0, 1, 1],
                         "segmentation": [[0, 0, 1, 0, 1, 1]], "area": 1}],
    })
    (record,) = DatasetCatalog.get("lvis_v1_minival")
    assert record["file_name"] == str(data_root / "coco" / "val2017" / "0007.jpg")
    assert record["annotations"][0]["category_id"] == 1202 and record["neg_category_ids"] == [3]


def test_cityscapes_instances_from_instance_id_png():
    ids = np.full((4, 6), 7, dtype=np.int64)  # road
    ids[1:3, 2:5] = 26001  # a car instance
    ids[0, 0] = 26  # a car crowd region
    annotations = instances_from_instance_ids(ids, [24, 25, 26, 27, 28, 31, 32, 33])
    crowd, car = annotations
    assert (car["category_id"], car["iscrowd"], car["bbox"]) == (2, 0, [2.0, 1.0, 5.0, 3.0])
    assert (crowd["iscrowd"], crowd["bbox"]) == (1, [0.0, 0.0, 1.0, 1.0])


def test_scannet_semantic_reads_the_split_list(data_root):
    base = data_root / "scannet_frames_25k"
    (base / "meta").mkdir(parents=True)
    (base / "meta" / "val.txt").write_text("scene0011_00/color/000100.jpg\n")
    label = base / "images" / "scene0011_00" / "label41_detectron2" / "000100.png"
    label.parent.mkdir(parents=True)
    Image.fromarray(np.zeros((2, 2), dtype=np.uint8)).save(label)
    (record,) = DatasetCatalog.get("scannet_41_val_seg")
    assert record["file_name"] == str(base / "images" / "scene0011_00" / "color" / "000100.jpg")
    assert record["sem_seg_file_name"] == str(label)


def test_resolving_a_file_vocabulary_without_its_files_names_the_file(data_root):
    with pytest.raises(DatasetFilesMissing, match="_annotations_min1cat.coco.json"):
        resolve_metadata("seginw_Bottles_val")
    with pytest.raises(DatasetFilesMissing, match="pascal_context_459_classes.txt"):
        resolve_metadata("pascal_context_459_sem_seg_val")
    assert len(resolve_metadata("odinw35_PKLot_val").thing_classes) == 2  # shipped: no file needed
