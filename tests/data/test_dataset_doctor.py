"""Dataset doctor: a clean set passes; one deliberately broken copy per diagnostic is caught by its code."""

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from openseed.data.dataset_doctor import check_coco_dataset
from openseed.data.synthetic.custom import ensure_custom_dataset
from tests.tool_loader import script_path

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def custom_set(tmp_path_factory) -> Path:
    return Path(ensure_custom_dataset(str(tmp_path_factory.mktemp("doctor") / "custom"), num_train=3, num_val=1))


def write_variant(tmp_path: Path, custom_set: Path, edit) -> tuple[str, str]:
    """A copy of the custom train json (images shared) changed by `edit(data, image_dir)`; returns (json, images)."""
    data = json.loads((custom_set / "annotations" / "train.json").read_text())
    image_dir = tmp_path / "images"
    image_dir.mkdir(exist_ok=True)
    for image in data["images"]:
        target = image_dir / image["file_name"]
        if not target.exists():
            target.write_bytes((custom_set / "images" / "train" / image["file_name"]).read_bytes())
    edit(data, image_dir)
    path = tmp_path / "train.json"
    path.write_text(json.dumps(data))
    return str(path), str(image_dir)


def test_clean_set_passes_with_its_training_view(tmp_path, custom_set):
    report = check_coco_dataset(*write_variant(tmp_path, custom_set, lambda data, images: None))
    data = json.loads((custom_set / "annotations" / "train.json").read_text())
    assert report.errors == [] and report.kind == "instances"
    view = report.training
    assert (view.task, view.mapper, view.images, view.images_kept) == ("seg", "coco_instance_lsj", 3, 3)
    assert view.instances_kept == len(data["annotations"]) == sum(view.per_class.values())
    assert set(view.per_class) == {"orange hexagon", "orange diamond", "purple hexagon", "purple diamond"}
    assert "OK:" in report.summary()


def _first_ann(data):
    return data["annotations"][0]


def _truncate_image(data, images):
    (images / data["images"][0]["file_name"]).write_bytes(b"\xff\xd8 not a jpeg")


def _resize_image(data, images):
    path = images / data["images"][0]["file_name"]
    Image.fromarray(np.zeros((10, 12, 3), dtype=np.uint8)).save(path)


def _empty_rle(data, images):
    ann = _first_ann(data)
    image = next(i for i in data["images"] if i["id"] == ann["image_id"])
    ann["segmentation"] = {"size": [image["height"], image["width"]], "counts": [image["height"] * image["width"]]}


BROKEN = {
    "missing_image": lambda data, images: data["images"][0].update(file_name="gone.jpg"),
    "unreadable_image": _truncate_image,
    "image_size": _resize_image,
    "box_outside": lambda data, images: _first_ann(data).update(bbox=[100.0, 100.0, 500.0, 40.0]),
    "box_zero_area": lambda data, images: _first_ann(data).update(bbox=[5.0, 5.0, 0.0, 10.0]),
    "mask_empty": _empty_rle,
    "unknown_category": lambda data, images: _first_ann(data).update(category_id=99),
    "unknown_image": lambda data, images: _first_ann(data).update(image_id=1234),
    "duplicate_image_id": lambda data, images: data["images"][1].update(id=data["images"][0]["id"]),
    "duplicate_annotation_id": lambda data, images: data["annotations"][1].update(id=data["annotations"][0]["id"]),
    "duplicate_category_id": lambda data, images: data["categories"][1].update(id=data["categories"][0]["id"]),
    "name_collision": lambda data, images: data["categories"][1].update(name="hexagon-orange"),  # -> "orange hexagon"
    "name_collision_case": lambda data, images: data["categories"][1].update(name="Orange Hexagon"),
}
WARNINGS = {
    "thing_stuff": lambda data, images: data["categories"][0].update(isthing=0),
    "crowd": lambda data, images: _first_ann(data).update(iscrowd=1),
}


@pytest.mark.parametrize("code", sorted(BROKEN))
def test_each_broken_set_fails_with_its_diagnostic(tmp_path, custom_set, code):
    report = check_coco_dataset(*write_variant(tmp_path, custom_set, BROKEN[code]))
    code = code.removesuffix("_case")
    assert code in {finding.code for finding in report.errors}, report.summary()
    assert report.findings[code].count >= 1 and report.findings[code].examples
    assert "FAILED" in report.summary() and code in report.summary()


@pytest.mark.parametrize("code", sorted(WARNINGS))
def test_warnings_do_not_fail(tmp_path, custom_set, code):
    report = check_coco_dataset(*write_variant(tmp_path, custom_set, WARNINGS[code]))
    assert report.errors == [] and code in {finding.code for finding in report.warnings}


def test_degenerate_polygon_and_unreadable_json(tmp_path, custom_set):
    def polygon(data, images):
        _first_ann(data).update(segmentation=[[1.0, 1.0, 5.0, 5.0]])  # two points: no area

    assert "mask_empty" in {f.code for f in check_coco_dataset(*write_variant(tmp_path, custom_set, polygon)).errors}
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert [f.code for f in check_coco_dataset(str(bad), str(tmp_path)).errors] == ["json"]


def test_panoptic_empty_segment_and_unlabelled_pixels(tiny_synthetic):
    root = Path(tiny_synthetic) / "panoptic" / "val"
    data = json.loads((root / "panoptic.json").read_text())
    report = check_coco_dataset(str(root / "panoptic.json"), str(root / "images"), str(root / "panoptic"))
    assert report.kind == "panoptic" and report.errors == [] and report.training.mapper == "coco_panoptic_lsj"
    broken = copy.deepcopy(data)
    segment = broken["annotations"][0]["segments_info"].pop()  # its pixels become unlabelled
    broken["annotations"][1]["segments_info"].append(dict(segment, id=999999))  # a segment without pixels
    path = root.parent / "broken_panoptic.json"
    path.write_text(json.dumps(broken))
    report = check_coco_dataset(str(path), str(root / "images"), str(root / "panoptic"))
    assert {f.code for f in report.errors} == {"mask_empty"}
    assert "unlabelled_segment" in {f.code for f in report.warnings}


def test_tool_exit_status_and_registered_name(tmp_path, custom_set):
    env_cmd = [sys.executable, str(script_path("tools/check_dataset.py"))]
    good = subprocess.run(env_cmd + ["--json", str(custom_set / "annotations" / "train.json"), "--image-root",
                                     str(custom_set / "images" / "train")], capture_output=True, text=True,
                          cwd=REPO_ROOT, env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"})
    assert good.returncode == 0 and "training view: task 'seg'" in good.stdout, good.stderr[-2000:]
    json_file, images = write_variant(tmp_path, custom_set, BROKEN["unknown_category"])
    config = tmp_path / "custom.yaml"
    config.write_text(f'_BASE_: "{REPO_ROOT}/configs/tiny/tiny_decoupled.yaml"\n'
                      f'DATASETS:\n  CUSTOM: ("broken_train:{json_file}:{images}",)\n')
    bad = subprocess.run(env_cmd + ["--config-file", str(config), "--dataset", "broken_train"], capture_output=True,
                         text=True, cwd=REPO_ROOT, env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"})
    assert bad.returncode == 1 and "ERROR unknown_category" in bad.stdout, bad.stderr[-2000:]
