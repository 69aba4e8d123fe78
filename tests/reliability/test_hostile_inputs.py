"""Hostile images, vocabularies and prompts through `Predictor`, and concurrent calls from 8 threads (tiny CPU
config, random weights)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from openseed.data.mappers.robust import read_image_checked
from openseed.data.registration.lvis import lvis_v1_class_names
from openseed.predictor import Predictor, load_rgb_image

TINY_CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "tiny" / "tiny_decoupled.yaml")
TASKS = ("panoptic", "instance", "semantic")
NAMES = ["red circle", "blue square", "sky"]


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    torch.manual_seed(0)
    return Predictor(TINY_CONFIG, weights="")


def _photo(height=60, width=90, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[: height // 2] = (150, 190, 240)
    image[height // 2 :] = (90, 140, 70)
    image[10 : height // 2, 20:50] = (220, 30, 30)
    return np.clip(image + rng.integers(0, 8, image.shape), 0, 255).astype(np.uint8)


def assert_same_prediction(first: dict, second: dict) -> None:
    assert torch.equal(first["panoptic_seg"][0], second["panoptic_seg"][0])
    assert first["panoptic_seg"][1] == second["panoptic_seg"][1]
    assert torch.equal(first["sem_seg"], second["sem_seg"])
    assert torch.equal(first["instances"].pred_masks, second["instances"].pred_masks)
    assert torch.equal(first["instances"].scores, second["instances"].scores)


def assert_valid(result: dict, size: tuple[int, int], num_classes: int) -> None:
    panoptic, segments = result["panoptic_seg"]
    assert panoptic.shape == size and result["sem_seg"].shape == (num_classes, *size)
    assert set(panoptic.unique().tolist()) <= {0} | {s["id"] for s in segments}
    assert all(0 <= s["category_id"] < num_classes for s in segments)
    instances = result["instances"]
    assert instances.image_size == size and instances.pred_masks.shape[1:] == size
    assert bool(((instances.pred_classes >= 0) & (instances.pred_classes < num_classes)).all())
    assert bool(torch.isfinite(instances.scores).all() and torch.isfinite(result["sem_seg"]).all())


@pytest.mark.parametrize("size", [(1, 1), (1, 5000), (5000, 1), (3, 7)])
def test_extreme_image_shapes(predictor, size):
    result = predictor(np.full((*size, 3), 128, dtype=np.uint8), NAMES, task=TASKS)
    assert_valid(result, size, len(NAMES))


def test_rgba_array_and_file_equal_rgb(predictor, tmp_path):
    rgb = _photo()
    rgba = np.concatenate([rgb, np.full((*rgb.shape[:2], 1), 77, dtype=np.uint8)], axis=2)
    Image.fromarray(rgba).save(tmp_path / "photo.png")
    expected = predictor(rgb, NAMES, task=TASKS)
    assert_same_prediction(predictor(rgba, NAMES, task=TASKS), expected)
    assert_same_prediction(predictor(tmp_path / "photo.png", NAMES, task=TASKS), expected)
    bgra = rgba[:, :, [2, 1, 0, 3]]
    assert_same_prediction(predictor(bgra, NAMES, task=TASKS, image_format="BGR"), expected)


def test_16_bit_png_and_array_are_scaled_not_clipped(predictor, tmp_path):
    gray16 = (np.arange(60 * 90, dtype=np.uint32).reshape(60, 90) * 12).astype(np.uint16)
    Image.fromarray(gray16).save(tmp_path / "gray16.png")
    assert Image.open(tmp_path / "gray16.png").mode.startswith("I")
    expected8 = np.rint(gray16 / 257.0).astype(np.uint8)
    read = read_image_checked(str(tmp_path / "gray16.png"), "RGB")
    assert read.dtype == np.uint8 and np.array_equal(read, np.repeat(expected8[:, :, None], 3, axis=2))
    assert read.max() > 200 and len(np.unique(read)) > 200  # Pillow's own conversion would clip to 255
    rgb16 = np.stack([gray16, gray16 // 2, 65535 - gray16], axis=2)
    assert np.array_equal(load_rgb_image(rgb16), np.rint(rgb16 / 257.0).astype(np.uint8))
    assert_same_prediction(predictor(tmp_path / "gray16.png", NAMES, task=TASKS), predictor(read, NAMES, task=TASKS))


def test_cmyk_jpeg_is_converted(predictor, tmp_path):
    cmyk = Image.fromarray(_photo()).convert("CMYK")
    cmyk.save(tmp_path / "cmyk.jpg", quality=95)
    read = load_rgb_image(tmp_path / "cmyk.jpg")
    assert read.shape == (60, 90, 3)
    assert np.array_equal(read, np.asarray(Image.open(tmp_path / "cmyk.jpg").convert("RGB")))
    assert np.abs(read.astype(int) - _photo().astype(int)).mean() < 20
    assert_valid(predictor(tmp_path / "cmyk.jpg", NAMES, task=TASKS), (60, 90), len(NAMES))


def test_exif_rotated_photo_is_upright_for_paths_and_pil_images(predictor, tmp_path):
    stored = Image.fromarray(_photo())
    exif = stored.getexif()
    exif[0x0112] = 6  # orientation: the viewer rotates 90° clockwise
    stored.save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    upright = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "rotated.jpg")).convert("RGB"))
    assert upright.shape == (90, 60, 3)
    assert np.array_equal(load_rgb_image(tmp_path / "rotated.jpg"), upright)
    assert np.array_equal(load_rgb_image(Image.open(tmp_path / "rotated.jpg")), upright)
    result = predictor(tmp_path / "rotated.jpg", NAMES, task=TASKS)
    assert_valid(result, (90, 60), len(NAMES))
    assert_same_prediction(result, predictor(upright, NAMES, task=TASKS))


def test_non_finite_box_prompts_are_refused(predictor):
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ValueError, match=r"boxes \[1\] have NaN or infinite coordinates"):
            predictor.segment_boxes(_photo(), [[5, 5, 40, 30], [0, 0, bad, 10]])
    assert len(predictor.segment_boxes(_photo(), [[5, 5, 40, 30]])) == 1


@pytest.mark.parametrize("names", [[], [""], ["cat", "   "]])
def test_empty_vocabularies_and_names_are_refused(predictor, names):
    with pytest.raises(ValueError, match="at least one class name|empty class name"):
        predictor(_photo(), names)


def test_duplicate_names_give_identical_classes(predictor):
    result = predictor(_photo(), ["cat", "cat", "dog"], task=TASKS)
    assert_valid(result, (60, 90), 3)
    torch.testing.assert_close(result["sem_seg"][0], result["sem_seg"][1], rtol=1e-5, atol=1e-5)
    assert_valid(predictor(_photo(), ["Cat", "cat", "CAT"], task=TASKS), (60, 90), 3)


@pytest.mark.parametrize("names", [
    ["猫", "chien 🐕", "café au lait", "Ελληνικά"],
    ["a" * 500, "an extremely long name " * 22],
    lvis_v1_class_names(),
], ids=["unicode", "500-characters", "lvis-1203"])
def test_unusual_vocabularies_work(predictor, names):
    assert_valid(predictor(_photo(), names, task=TASKS), (60, 90), len(names))


def test_eight_threads_with_different_vocabularies_equal_sequential_calls(predictor):
    vocabularies = [[f"thing {index}", f"object {index + 1}", "sky"] for index in range(8)]
    photo = _photo()
    predictor.model.lang_encoder.clear_cache()
    sequential = [predictor(photo, names, task=TASKS) for names in vocabularies]
    concurrent, errors = [None] * 8, []

    def work(index):
        try:
            for _ in range(2):
                concurrent[index] = predictor(photo, vocabularies[index], task=TASKS)
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    predictor.model.lang_encoder.clear_cache()
    threads = [threading.Thread(target=work, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for expected, result in zip(sequential, concurrent):
        assert_same_prediction(result, expected)
    cache = predictor.model.lang_encoder.cache
    for names in [[f"extra {index}"] for index in range(3 * cache.max_entries)]:
        predictor(photo, names, task="detection")
    assert cache.num_in_memory == cache.max_entries


@pytest.mark.slow
def test_48_megapixel_photo_in_bounded_memory():
    """A 6000×8000 photo through `Predictor` (panoptic, 4 names) in a fresh process: peak RSS < 6 GB."""
    from openseed.benchmarks.common import run_isolated  # noqa: PLC0415
    from openseed.benchmarks.eval import eval_case  # noqa: PLC0415

    row = run_isolated(eval_case, dict(config_file=TINY_CONFIG, opts=["MODEL.DEVICE", "cpu"], weights="", seed=0,
                                       size=(0, 0), vocab="4", tasks=("panoptic",), runs=1, warmup=0, text_cache="",
                                       image_size=(6000, 8000)), threads=1)
    assert "error" not in row
    assert row["output_size"] == [6000, 8000] and row["postprocess_resolution"] == "network"
    assert max(row["peak_rss_mb"], row["text_setup_peak_rss_mb"]) < 6 * 1024
