"""`openseed.Predictor`: image inputs (path, PIL, RGB/BGR arrays), vocabularies, outputs at the original size,
weights loading and box-prompted segmentation, on the tiny CPU config (random weights)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from detectron2.structures import Instances
from PIL import Image

import openseed
from openseed.checkpoint import CheckpointMismatchError
from openseed.checkpoint.io import save_checkpoint
from openseed.config import setup_cfg
from openseed.data.mappers.robust import BadSampleError
from openseed.data.mappers.test_mapper import TestMapper
from openseed.predictor import Predictor, load_rgb_image, make_vocabulary
from openseed.vocabulary import Vocabulary

TINY_CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "tiny" / "tiny_decoupled.yaml")
VOCAB = Vocabulary.from_names(["red circle", "blue square"], ["sky", "grass"])


def _image(height=96, width=144, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[: height // 2] = (150, 190, 240)
    image[height // 2 :] = (90, 140, 70)
    image[20:60, 30:70] = (220, 30, 30)
    return np.clip(image + rng.integers(0, 8, image.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    torch.manual_seed(0)
    return Predictor(TINY_CONFIG, weights="")


def test_predictor_is_exported():
    assert openseed.Predictor is Predictor


def test_load_rgb_image_accepts_paths_pil_and_arrays(tmp_path):
    rgb = _image()
    path = tmp_path / "image.png"
    Image.fromarray(rgb).save(path)
    assert np.array_equal(load_rgb_image(path), rgb)
    assert np.array_equal(load_rgb_image(str(path)), rgb)
    assert np.array_equal(load_rgb_image(Image.fromarray(rgb)), rgb)
    assert np.array_equal(load_rgb_image(rgb), rgb)
    assert np.array_equal(load_rgb_image(np.ascontiguousarray(rgb[:, :, ::-1]), image_format="BGR"), rgb)
    gray = rgb[:, :, 0]
    assert np.array_equal(load_rgb_image(gray), np.stack([gray] * 3, axis=2))
    assert np.array_equal(load_rgb_image(Image.fromarray(gray)), np.stack([gray] * 3, axis=2))


def test_load_rgb_image_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        load_rgb_image(np.zeros((8, 8, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"H×W×4"):
        load_rgb_image(np.zeros((8, 8, 5), dtype=np.uint8))
    with pytest.raises(ValueError, match="at least one pixel"):
        load_rgb_image(np.zeros((0, 8, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="image_format"):
        load_rgb_image(_image(), image_format="RGBA")
    with pytest.raises(TypeError, match="list"):
        load_rgb_image([[0, 0, 0]])
    missing = tmp_path / "missing.jpg"
    with pytest.raises(BadSampleError, match="missing.jpg"):
        load_rgb_image(missing)
    not_an_image = tmp_path / "notes.txt"
    not_an_image.write_text("hello")
    with pytest.raises(BadSampleError, match="notes.txt"):
        load_rgb_image(not_an_image)


def test_make_vocabulary():
    assert make_vocabulary(["cat", "dog"]) == Vocabulary(("cat", "dog"), (True, True))
    assert make_vocabulary(thing_classes=["cat"], stuff_classes=["sky"]) == Vocabulary(("cat", "sky"), (True, False))
    assert make_vocabulary(stuff_classes=["sky"]) == Vocabulary(("sky",), (False,))
    assert make_vocabulary(VOCAB) is VOCAB
    with pytest.raises(ValueError, match="not both"):
        make_vocabulary(["cat"], thing_classes=["dog"])
    with pytest.raises(ValueError, match="no classes"):
        make_vocabulary()
    with pytest.raises(TypeError, match="one string"):
        make_vocabulary("cat,dog")


def test_model_input_resizes_like_the_evaluation(predictor):
    cfg = predictor.cfg
    item = predictor.model_input(_image(96, 144))
    assert (item["height"], item["width"]) == (96, 144)
    assert item["image"].dtype == torch.uint8
    short, long = sorted(item["image"].shape[1:])
    assert short == cfg.INPUT.MIN_SIZE_TEST and long == round(144 * cfg.INPUT.MIN_SIZE_TEST / 96)


def test_model_input_max_size_zero_means_no_limit_as_in_the_test_mapper():
    """INPUT.MAX_SIZE_TEST ≤ 0 leaves the long side unlimited, in the Predictor as in `TestMapper` (evaluation)."""
    wide = _image(8, 400)
    sizes = {}
    for max_size in (0, -1, 1333):
        cfg = setup_cfg(TINY_CONFIG, ["INPUT.MIN_SIZE_TEST", "32", "INPUT.MAX_SIZE_TEST", str(max_size)])
        item = Predictor(cfg, weights="").model_input(wide)
        sizes[max_size] = tuple(item["image"].shape[1:])
        resized = TestMapper(min_size=32, max_size=max_size, image_format="RGB").resize_image(wide)
        assert sizes[max_size] == resized.shape[:2]
    assert sizes[0] == sizes[-1] == (32, 1600)  # short side 8 -> 32, long side 400 -> 1600, unlimited
    assert sizes[1333] == (27, 1333)  # capped: scale 1333 / 400, short side 8 * 3.3325 = 26.66 -> 27


def test_outputs_are_at_the_original_size_for_every_task(predictor):
    image = _image(96, 144)
    outputs = predictor(image, thing_classes=["red circle", "blue square"], stuff_classes=["sky", "grass"],
                        task=("panoptic", "instance", "semantic"))
    panoptic, segments_info = outputs["panoptic_seg"]
    assert panoptic.shape == (96, 144)
    assert all(0 <= s["category_id"] < 4 for s in segments_info)
    assert outputs["instances"].image_size == (96, 144)
    assert outputs["instances"].pred_masks.shape[1:] == (96, 144)
    assert outputs["sem_seg"].shape == (4, 96, 144)
    detection = predictor(image, vocabulary=["red circle"], task="detection")
    assert set(detection) == {"instances"}
    assert not detection["instances"].has("pred_masks")
    assert (detection["instances"].pred_classes == 0).all()


def test_every_input_kind_gives_the_same_prediction(predictor, tmp_path):
    rgb = _image()
    path = tmp_path / "image.png"
    Image.fromarray(rgb).save(path)
    reference = predictor(rgb, VOCAB, task="semantic")["sem_seg"]
    for image, image_format in ((path, "RGB"), (Image.fromarray(rgb), "RGB"), (rgb[:, :, ::-1].copy(), "BGR")):
        assert torch.equal(predictor(image, VOCAB, task="semantic", image_format=image_format)["sem_seg"], reference)
    swapped = predictor(rgb[:, :, ::-1].copy(), VOCAB, task="semantic")["sem_seg"]
    assert not torch.equal(swapped, reference)  # the stated channel order matters


def test_weights_are_loaded(predictor, tmp_path):
    torch.manual_seed(1)
    source = Predictor(TINY_CONFIG, weights="")
    path = tmp_path / "model_final.pth"
    save_checkpoint({"model": source.model.state_dict()}, path)
    loaded = Predictor(TINY_CONFIG, weights=path)
    image = _image()
    expected = source(image, VOCAB, task="semantic")["sem_seg"]
    assert torch.allclose(loaded(image, VOCAB, task="semantic")["sem_seg"], expected)
    assert not torch.allclose(predictor(image, VOCAB, task="semantic")["sem_seg"], expected)
    state = source.model.state_dict()
    state.pop(next(iter(state)))
    save_checkpoint({"model": state}, tmp_path / "incomplete.pth")
    with pytest.raises(CheckpointMismatchError, match="missing"):
        Predictor(TINY_CONFIG, weights=tmp_path / "incomplete.pth")


def test_config_node_and_overrides():
    cfg = setup_cfg(TINY_CONFIG, ["INPUT.MIN_SIZE_TEST", "64"])
    predictor = Predictor(cfg, weights="")
    assert min(predictor.model_input(_image(96, 144))["image"].shape[1:]) == 64
    assert predictor.device == torch.device("cpu")
    with pytest.raises(ValueError, match="opts"):
        Predictor(cfg, weights="", opts=["INPUT.MIN_SIZE_TEST", "64"])


def test_segment_boxes_returns_one_mask_per_box(predictor):
    image = _image(96, 144)
    boxes = [[30, 20, 70, 60], [0, 48, 144, 96]]
    result = predictor.segment_boxes(image, boxes, concepts=["red circle", "grass"])
    assert isinstance(result, Instances)
    assert len(result) == 2 and result.image_size == (96, 144)
    assert result.pred_masks.shape == (2, 96, 144) and result.pred_masks.dtype == torch.bool
    assert result.pred_classes.tolist() == [1, 0]  # index in the sorted concepts ("grass", "red circle")
    labelled = predictor.segment_boxes(image, boxes, vocabulary=["red circle", "grass", "sky"])
    assert ((labelled.pred_classes >= 0) & (labelled.pred_classes < 3)).all()
    assert len(predictor.segment_boxes(Image.fromarray(image), np.zeros((0, 4)))) == 0
