"""tools/demo.py: folders with bad files, overlays, the COCO-format predictions JSON; and the COCO export itself."""

import json
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from PIL import Image
from pycocotools.coco import COCO

from openseed.checkpoint.io import save_checkpoint
from openseed.config import setup_cfg
from openseed.demo.batch import list_inputs
from openseed.demo.coco_export import CocoPredictionWriter, encode_mask, prediction_annotations
from openseed.vocabulary import Vocabulary
from tests.tool_loader import load_tool

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_CONFIG = str(REPO_ROOT / "configs" / "tiny" / "tiny_decoupled.yaml")




@pytest.fixture(scope="module")
def tool():
    return load_tool("demo")


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = build_model(setup_cfg(TINY_CONFIG))
    path = tmp_path_factory.mktemp("weights") / "model_final.pth"
    save_checkpoint({"model": model.state_dict()}, path)
    return path


def _write_image(path: Path, seed: int, size=(80, 120)) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)


def _run(tool, weights, input_path, output, task="instance", extra=()):
    return tool.main(["--config-file", TINY_CONFIG, "--weights", str(weights), "--input", str(input_path),
                      "--vocab", "red circle,blue square,sky", "--stuff", "sky", "--task", task,
                      "--output", str(output), "--score-threshold", "0.0", *extra])


def test_folder_with_bad_files_processes_the_rest(tool, weights, tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    _write_image(folder / "a.jpg", 0)
    _write_image(folder / "b.png", 1, size=(64, 64))
    (folder / "notes.txt").write_text("not an image")
    _write_image(folder / "broken.jpg", 2)
    data = (folder / "broken.jpg").read_bytes()
    (folder / "broken.jpg").write_bytes(data[: len(data) // 3])  # truncated JPEG
    (folder / "subfolder").mkdir()

    assert _run(tool, weights, folder, tmp_path / "out") == 0
    err = capsys.readouterr().err
    assert "2 file(s) could not be read" in err
    assert "notes.txt" in err and "broken.jpg" in err
    assert "a.jpg" not in err and "b.png" not in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png", "predictions.json"]
    overlay = np.asarray(Image.open(tmp_path / "out" / "a.png"))
    assert overlay.shape == (80, 120, 3)

    coco = COCO(str(tmp_path / "out" / "predictions.json"))
    assert [coco.imgs[i]["file_name"] for i in sorted(coco.imgs)] == ["a.jpg", "b.png"]
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["red circle", "blue square", "sky"]
    assert [c["isthing"] for c in coco.loadCats(coco.getCatIds())] == [1, 1, 0]
    annotations = coco.loadAnns(coco.getAnnIds())
    assert annotations, "the tiny model returns its top detections even with random weights"
    for annotation in annotations:
        mask = coco.annToMask(annotation)
        image = coco.imgs[annotation["image_id"]]
        assert mask.shape == (image["height"], image["width"])
        assert annotation["area"] == int(mask.sum())
        assert 0.0 <= annotation["score"] <= 1.0


def test_only_bad_files_exits_non_zero(tool, weights, tmp_path, capsys):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "notes.txt").write_text("not an image")
    assert _run(tool, weights, folder, tmp_path / "out") == 1
    assert "notes.txt" in capsys.readouterr().err
    assert not (tmp_path / "out" / "predictions.json").exists()


def test_single_image_panoptic(tool, weights, tmp_path):
    _write_image(tmp_path / "one.jpg", 3)
    assert _run(tool, weights, tmp_path / "one.jpg", tmp_path / "out", task="panoptic") == 0
    predictions = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert len(predictions["images"]) == 1
    assert all("score" not in a and "segmentation" in a for a in predictions["annotations"])


def test_missing_input_names_the_path(tool, weights, tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        _run(tool, weights, tmp_path / "nowhere", tmp_path / "out")


def test_vocabulary_from_arguments(tool):
    vocab = tool.vocabulary_from_args("cat, dog,grass", "grass,sky")
    assert vocab == Vocabulary(("cat", "dog", "grass", "sky"), (True, True, False, False))
    with pytest.raises(ValueError, match="--vocab"):
        tool.vocabulary_from_args(" , ", "")


def test_list_inputs_sorted_files_only(tmp_path):
    for name in ("b.jpg", "a.txt", "c.png"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "d").mkdir()
    assert [p.name for p in list_inputs(tmp_path)] == ["a.txt", "b.jpg", "c.png"]
    assert list_inputs(tmp_path / "c.png") == [tmp_path / "c.png"]


def test_panoptic_export_matches_the_segments():
    ids = torch.zeros(6, 8, dtype=torch.int32)
    ids[1:4, 2:5] = 1
    ids[4:, :] = 2
    segments = [{"id": 1, "isthing": True, "category_id": 0}, {"id": 2, "isthing": False, "category_id": 2}]
    annotations = prediction_annotations({"panoptic_seg": (ids, segments)}, "panoptic")
    assert [a["category_id"] for a in annotations] == [1, 3]
    assert annotations[0]["bbox"] == [2.0, 1.0, 3.0, 3.0] and annotations[0]["area"] == 9
    assert annotations[1]["bbox"] == [0.0, 4.0, 8.0, 2.0] and annotations[1]["area"] == 16
    decoded = mask_util.decode({"size": annotations[0]["segmentation"]["size"],
                                "counts": annotations[0]["segmentation"]["counts"].encode("ascii")})
    assert np.array_equal(decoded.astype(bool), (ids == 1).numpy())


def test_instance_semantic_and_detection_export():
    instances = Instances((6, 8))
    masks = torch.zeros(2, 6, 8, dtype=torch.bool)
    masks[0, :2, :2] = True
    masks[1, 3:, 4:] = True
    instances.pred_masks = masks
    instances.pred_boxes = Boxes(torch.tensor([[0.0, 0.0, 2.0, 2.0], [4.0, 3.0, 8.0, 6.0]]))
    instances.scores = torch.tensor([0.9, 0.25])
    instances.pred_classes = torch.tensor([1, 0])
    annotations = prediction_annotations({"instances": instances}, "instance")
    assert [(a["category_id"], a["score"], a["area"]) for a in annotations] == [(2, pytest.approx(0.9), 4),
                                                                                (1, pytest.approx(0.25), 12)]
    assert annotations[1]["bbox"] == [4.0, 3.0, 4.0, 3.0]
    instances.remove("pred_masks")
    detections = prediction_annotations({"instances": instances}, "detection")
    assert all("segmentation" not in a for a in detections) and detections[1]["area"] == 12.0
    sem_seg = torch.zeros(3, 6, 8)
    sem_seg[2, :, :3] = 1.0
    regions = prediction_annotations({"sem_seg": sem_seg}, "semantic")
    assert [(a["category_id"], a["area"]) for a in regions] == [(1, 30), (3, 18)]


def test_writer_numbers_images_and_annotations(tmp_path):
    vocab = Vocabulary.from_names(["cat"], ["sky"])
    writer = CocoPredictionWriter(vocab, "semantic")
    sem_seg = torch.zeros(2, 4, 4)
    sem_seg[1, :2] = 1.0
    assert writer.add("x.jpg", 4, 4, {"sem_seg": sem_seg}) == 1
    assert writer.add("y.jpg", 4, 4, {"sem_seg": sem_seg}) == 2
    writer.write(str(tmp_path / "p.json"))
    data = json.loads((tmp_path / "p.json").read_text())
    assert [a["id"] for a in data["annotations"]] == [1, 2, 3, 4]
    assert [a["image_id"] for a in data["annotations"]] == [1, 1, 2, 2]
    assert data["categories"] == [{"id": 1, "name": "cat", "isthing": 1}, {"id": 2, "name": "sky", "isthing": 0}]
    assert encode_mask(np.ones((2, 2), dtype=bool))["size"] == [2, 2]
