"""The web demo's logic without a browser: input checks, request -> results, text-embedding cache, the page handler."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model
from PIL import Image
from pycocotools.coco import COCO

from openseed.checkpoint.io import save_checkpoint
from openseed.config import setup_cfg
from openseed.demo.coco_export import prediction_annotations
from openseed.demo.web_requests import (
    MAX_NAMES,
    RequestError,
    WebDemoService,
    WebRequest,
    parse_boxes,
    read_upload,
    request_vocabulary,
)
from openseed.predictor import Predictor
from openseed.vocabulary import Vocabulary
from tests.tool_loader import load_tool

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_CONFIG = str(REPO_ROOT / "configs" / "tiny" / "tiny_decoupled.yaml")
NAMES = "red circle, blue square, sky"


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> WebDemoService:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "model_final.pth"
    save_checkpoint({"model": build_model(setup_cfg(TINY_CONFIG)).state_dict()}, path)
    return WebDemoService(Predictor(TINY_CONFIG, path))


@pytest.fixture
def image_file(tmp_path) -> Path:
    path = tmp_path / "upload_1234.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)).save(path)
    return path


def _request(path, **fields) -> WebRequest:
    values = {"image_name": "street.png", "names": NAMES, "stuff": "sky", "task": "panoptic"} | fields
    return WebRequest(str(path) if path else None, **values)


def test_boxes_are_parsed_with_optional_names():
    boxes, names = parse_boxes("10,20,110,140; 0, 0, 5.5, 7", width=200, height=150)
    assert boxes.dtype == np.float32 and boxes.tolist() == [[10, 20, 110, 140], [0, 0, 5.5, 7]]
    assert names is None
    boxes, names = parse_boxes(" 1,2,30,40 red circle ;5,5,9,9 sky; ", width=50, height=50)
    assert boxes.shape == (2, 4) and names == ["red circle", "sky"]
    assert parse_boxes("", 10, 10)[0].shape == (0, 4)


@pytest.mark.parametrize("text, problem", [
    ("10,20,110", "not four numbers"),
    ("a,b,c,d", "not four numbers"),
    ("10,20,5,40", "x0 < x1"),
    ("300,10,400,40", "outside the 200×150 image"),
    ("1,1,9,9 cat; 2,2,8,8", "name every box or none"),
])
def test_bad_boxes_say_what_is_wrong(text, problem):
    with pytest.raises(RequestError, match=problem):
        parse_boxes(text, width=200, height=150)


def test_vocabulary_fields():
    assert request_vocabulary("cat, dog,grass, cat", "grass, sky") == Vocabulary(
        ("cat", "dog", "grass", "sky"), (True, True, False, False))
    with pytest.raises(RequestError, match="empty"):
        request_vocabulary(" , ", "")
    with pytest.raises(RequestError, match=f"at most {MAX_NAMES}"):
        request_vocabulary(",".join(f"class {k}" for k in range(MAX_NAMES + 1)), "")


def test_unreadable_missing_and_huge_images_get_messages(tmp_path, image_file):
    with pytest.raises(RequestError, match="no image"):
        read_upload(None, "x.png", 10**6)
    text = tmp_path / "upload_99.png"
    text.write_text("not a picture")
    with pytest.raises(RequestError, match=r"notes\.png could not be read as an image") as error:
        read_upload(str(text), "notes.png", 10**6)
    assert str(tmp_path) not in str(error.value), "the message names the user's file, not the server's copy"
    truncated = tmp_path / "upload_7.jpg"
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(RequestError, match=r"photo\.jpg") as error:
        read_upload(str(truncated), "photo.jpg", 10**6)
    assert str(tmp_path) not in str(error.value)
    with pytest.raises(RequestError, match=r"80×60 pixels .* at most 0\.0 megapixels: downscale"):
        read_upload(str(image_file), "big.png", 4000)
    assert read_upload(str(image_file), "ok.png", 4800).shape == (60, 80, 3)


def test_panoptic_request_matches_the_predictor(service, image_file):
    result = service.run(_request(image_file))
    vocabulary = Vocabulary.from_names(["red circle", "blue square"], ["sky"])
    outputs = service.predictor(np.asarray(Image.open(image_file)), vocabulary, task="panoptic")
    expected = prediction_annotations(outputs, "panoptic")
    assert result.picture.shape == (60, 80, 3) and result.picture.dtype == np.uint8
    assert sorted((s.name, s.area) for s in result.segments) == sorted(
        (vocabulary.names[a["category_id"] - 1], a["area"]) for a in expected)
    assert all(s.score is None for s in result.segments)
    assert [c["name"] for c in result.coco["categories"]] == list(vocabulary.names)
    assert result.coco["images"] == [{"id": 1, "file_name": "street.png", "height": 60, "width": 80}]
    assert f"{len(result.segments)} segment(s) (panoptic) on street.png (80×60)" in result.summary


def test_instances_below_the_threshold_are_left_out(service, image_file):
    everything = service.run(_request(image_file, task="instance", score_threshold=0.0))
    scores = sorted((s.score for s in everything.segments), reverse=True)
    assert len(scores) > 2 and [s.score for s in everything.segments] == scores
    threshold = scores[len(scores) // 2]
    kept = service.run(_request(image_file, task="instance", score_threshold=threshold))
    assert [s.score for s in kept.segments] == [s for s in scores if s >= threshold]
    assert len(kept.coco["annotations"]) == len(kept.segments)
    detections = service.run(_request(image_file, task="detection", score_threshold=threshold))
    assert all("segmentation" not in a for a in detections.coco["annotations"])


def test_box_prompts_give_one_mask_per_box(service, image_file):
    result = service.run(_request(image_file, boxes="5,5,40,30; 30,20,79,59", task="semantic", score_threshold=1.0))
    assert len(result.segments) == 2 and "2 box prompt(s), instance masks" in result.summary
    assert all(a["area"] > 0 and "segmentation" in a for a in result.coco["annotations"])
    named = service.run(_request(image_file, boxes="5,5,40,30 red circle; 30,20,79,59 sky"))
    assert len(named.segments) == 2


def test_bad_fields_are_request_errors(service, image_file):
    with pytest.raises(RequestError, match="unknown task"):
        service.run(_request(image_file, task="depth"))
    with pytest.raises(RequestError, match=r"\[0, 1\]"):
        service.run(_request(image_file, score_threshold=1.5))
    with pytest.raises(RequestError, match="empty"):
        service.run(_request(image_file, names="", stuff=""))


def test_text_embeddings_are_computed_once_per_vocabulary(service, image_file, monkeypatch):
    encoder = service.predictor.model.sem_seg_head.predictor.lang_encoder
    calls = []
    compute = encoder._ensemble_embeddings
    monkeypatch.setattr(encoder, "_ensemble_embeddings", lambda names: calls.append(names) or compute(names))
    new_names = "purple hexagon, orange moon"
    service.run(_request(image_file, names=new_names, stuff=""))
    service.run(_request(image_file, names=new_names, stuff="", task="instance"))
    assert calls == [("purple hexagon", "orange moon")], "the second request re-used the cached embeddings"
    service.run(_request(image_file, names=new_names + ", sky", stuff="sky"))
    assert len(calls) == 2


def _page_handler_class():
    pytest.importorskip("gradio", reason="the web extra (gradio) is not installed: pip install -e .[web]")
    from openseed.demo.web_app import PageHandler

    return PageHandler


def test_page_handler_shows_messages_and_writes_the_json(service, image_file, tmp_path):
    PageHandler = _page_handler_class()

    handler = PageHandler(service, tmp_path)
    upload = {"path": str(image_file), "orig_name": "street.png"}
    picture, rows, json_path, status = handler(upload, NAMES, "sky", "instance", "", 0.0)
    assert picture.shape == (60, 80, 3) and "segment(s) (instance) on street.png" in status
    coco = COCO(json_path)
    assert len(coco.getAnnIds()) == len(rows) > 0
    annotations = json.loads(Path(json_path).read_text())["annotations"]
    assert sorted((row[0], row[1]) for row in rows) == sorted(
        (coco.cats[a["category_id"]]["name"], f"{a['score']:.2f}") for a in annotations)
    assert all(isinstance(row[2], int) and row[1] for row in rows)
    second = handler(upload, NAMES, "sky", "panoptic", "", 0.0)[2]
    assert Path(second).is_file() and not Path(json_path).exists(), "only the latest JSON is kept"

    assert handler(None, NAMES, "", "panoptic", "", 0.3) == (None, [], None, (
        "**Cannot segment this request:** no image: upload a picture first"))
    status = handler(upload, " ", "", "panoptic", "", 0.3)[3]
    assert "the list of class names is empty" in status


def test_page_handler_hides_internal_errors(service, image_file, tmp_path, monkeypatch, caplog):
    PageHandler = _page_handler_class()

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory in the decoder")

    monkeypatch.setattr(service, "predictor", broken)
    outputs = PageHandler(service, tmp_path)({"path": str(image_file)}, NAMES, "", "panoptic", "", 0.3)
    assert outputs[:3] == (None, [], None)
    assert outputs[3].startswith("**Internal error** (RuntimeError: out of memory in the decoder)")
    assert "Traceback" not in outputs[3] and "Traceback" in caplog.text




def test_tool_defaults_to_the_demo_model_and_explains_missing_files(tmp_path, monkeypatch):
    tool = load_tool("web_demo")
    args = tool.argument_parser().parse_args([])
    assert (args.config_file, args.weights, args.host) == (
        "configs/demo/openseed_demo.yaml", "output/demo/model_final.pth", "127.0.0.1")
    assert (REPO_ROOT / args.config_file).is_file()
    assert tool.argument_parser().parse_args(["--port", "8000", "MODEL.DEVICE", "cpu"]).opts == ["MODEL.DEVICE", "cpu"]
    monkeypatch.chdir(tmp_path)  # no output/demo here
    with pytest.raises(SystemExit, match="run `make demo` first"):
        tool.check_files(str(REPO_ROOT / args.config_file), args.weights)
    with pytest.raises(SystemExit, match="nowhere.pth does not exist: pass --weights"):
        tool.check_files(TINY_CONFIG, str(tmp_path / "nowhere.pth"))
    with pytest.raises(SystemExit, match="config file"):
        tool.check_files(str(tmp_path / "none.yaml"), TINY_CONFIG)
