"""Our LSJ training mappers equal the official ones when the official random draws are replayed.

The fixtures `fixtures/mapper_coco_panoptic_lsj.npz` and `fixtures/mapper_objects365.npz` hold hand-made samples,
the flip / scale / crop draws the official mappers made on them (captured where drawn) and the official outputs;
`scripts/reference/mappers_fixture.py` writes them (docs/fidelity_mappers.md). No official code runs here. Our
mappers get the recorded draws through their draw-source seam (`ReplayDraws`, `openseed/data/mappers/draws.py`).
`OPENSEED_MAPPER_FIXTURES=<dir>` runs the same tests on fixtures regenerated elsewhere (other seeds and sizes).

The Objects365 samples also hold one degenerate box of each kind (zero width / height, negative width, NaN, entirely
outside the image); ours drops them before the transform (counted, logged), so our output equals the official output
on the sample without them ("clean"), recorded with the same draws (docs/fidelity_mappers.md, difference 5).
"""

import io
import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from openseed.config import get_cfg
from openseed.data.mappers import COCOPanopticLSJMapper, Objects365LSJMapper, ReplayDraws

FIXTURES = Path(os.environ.get("OPENSEED_MAPPER_FIXTURES", Path(__file__).parent / "fixtures"))
BOX_TOLERANCE_PX = 1e-4
DEGENERATE_KINDS = ("zero_width", "zero_height", "negative_width", "not_finite", "outside_right", "outside_below",
                    "outside_above")  # scripts/reference/mappers_samples.py puts one of each in every Objects365 sample


def load_fixture(mapper_name: str) -> tuple[dict, dict]:
    with np.load(FIXTURES / f"mapper_{mapper_name}.npz") as data:
        arrays = {key: data[key] for key in data.files}
    return json.loads(str(arrays.pop("meta"))), arrays


PANOPTIC, OBJECTS365 = load_fixture("coco_panoptic_lsj"), load_fixture("objects365")


def sample_params(fixture: tuple[dict, dict]) -> list:
    return [pytest.param(k, id=f"{k}-{sample['case']}") for k, sample in enumerate(fixture[0]["samples"])]


def decode_png(array: np.ndarray) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(array.tobytes())))


def unpack(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return np.unpackbits(array, count=int(np.prod(shape))).reshape(shape).astype(bool)


def dataset_dict(tmp_path: Path, arrays: dict, k: int, sample: dict) -> dict:
    """The sample's dataset dict with its PNG inputs written back to files."""
    record = dict(sample["dataset_dict"])
    (tmp_path / "image.png").write_bytes(arrays[f"s{k}_image_png"].tobytes())
    record["file_name"] = str(tmp_path / "image.png")
    if f"s{k}_pan_png" in arrays:
        (tmp_path / "pan.png").write_bytes(arrays[f"s{k}_pan_png"].tobytes())
        record["pan_seg_file_name"] = str(tmp_path / "pan.png")
    return record


def run_ours(mapper_class, meta: dict, sample: dict, record: dict, filter_empty_after_crop: bool = True) -> dict:
    cfg = get_cfg()
    for key in ("IMAGE_SIZE", "MIN_SCALE", "MAX_SCALE", "RANDOM_FLIP", "FORMAT"):
        cfg.INPUT[key] = meta["input"][key]
    cfg.INPUT.FILTER_EMPTY_AFTER_CROP = filter_empty_after_crop
    draws = ReplayDraws([draw[1:] for draw in sample["draws"]])
    out = mapper_class(cfg, is_train=True, draws=draws)(record)
    assert draws.remaining == 0, "our mapper drew fewer numbers than the official one"
    return out


def official_output(meta: dict, arrays: dict, k: int) -> dict:
    size = meta["input"]["IMAGE_SIZE"]
    summary = meta["samples"][k]["official_output"]
    out = {"image": decode_png(arrays[f"s{k}_out_image_png"]), "classes": arrays[f"s{k}_out_classes"],
           "boxes": arrays[f"s{k}_out_boxes"], "fields": summary["instance_fields"],
           "masks_dtype": summary["masks_dtype"], "image_size": tuple(summary["image_size"])}
    if f"s{k}_out_masks" in arrays:
        out["masks"] = unpack(arrays[f"s{k}_out_masks"], (summary["num_instances"], size, size))
    return out


def assert_same_instances(ours: dict, expected: dict, keep: np.ndarray | None = None) -> None:
    instances = ours["instances"]
    keep = np.ones(len(expected["classes"]), dtype=bool) if keep is None else keep
    assert ours["image"].dtype == torch.uint8 and instances.image_size == expected["image_size"]
    np.testing.assert_array_equal(ours["image"].permute(1, 2, 0).numpy(), expected["image"])
    np.testing.assert_array_equal(instances.gt_classes.numpy(), expected["classes"][keep])
    np.testing.assert_allclose(instances.gt_boxes.tensor.numpy(), expected["boxes"][keep], rtol=0,
                               atol=BOX_TOLERANCE_PX)
    if "masks" in expected:
        np.testing.assert_array_equal(instances.gt_masks.numpy(), expected["masks"][keep])
        assert str(instances.gt_masks.dtype) == expected["masks_dtype"]
    assert sorted(instances.get_fields()) == expected["fields"]


@pytest.mark.parametrize("k", sample_params(PANOPTIC))
def test_panoptic_lsj_equals_official_with_reference_empty_segments(k, tmp_path):
    """`INPUT.FILTER_EMPTY_AFTER_CROP False` is the official behaviour: segments cropped away stay, empty."""
    meta, arrays = PANOPTIC
    sample = meta["samples"][k]
    ours = run_ours(COCOPanopticLSJMapper, meta, sample, dataset_dict(tmp_path, arrays, k, sample),
                    filter_empty_after_crop=False)
    assert_same_instances(ours, official_output(meta, arrays, k))


@pytest.mark.parametrize("k", sample_params(PANOPTIC))
def test_panoptic_lsj_default_drops_segments_cropped_away(k, tmp_path):
    """The clean default equals the official output without its empty (cropped-away) segments."""
    meta, arrays = PANOPTIC
    sample = meta["samples"][k]
    expected = official_output(meta, arrays, k)
    non_empty = expected["masks"].any(axis=(1, 2))
    assert non_empty.all() != sample["vanished"]
    ours = run_ours(COCOPanopticLSJMapper, meta, sample, dataset_dict(tmp_path, arrays, k, sample))
    assert_same_instances(ours, expected, keep=non_empty)


@pytest.mark.parametrize("k", sample_params(OBJECTS365))
def test_objects365_equals_official_on_the_clean_sample(k, tmp_path, caplog):
    """Ours on the full sample = official on the sample without its degenerate boxes; each drop is logged."""
    meta, arrays = OBJECTS365
    sample = meta["samples"][k]
    with caplog.at_level(logging.WARNING, logger="openseed.data.mappers.robust"):
        ours = run_ours(Objects365LSJMapper, meta, sample, dataset_dict(tmp_path, arrays, k, sample))
    expected = dict(official_output(meta, arrays, k), classes=arrays[f"s{k}_clean_out_classes"],
                    boxes=arrays[f"s{k}_clean_out_boxes"])
    assert_same_instances(ours, expected)
    assert caplog.text.count("dropping an annotation, keeping the image") == len(DEGENERATE_KINDS)


@pytest.mark.parametrize("k", sample_params(OBJECTS365))
def test_objects365_official_drops_or_keeps_degenerate_boxes_as_documented(k, tmp_path):
    """Official: zero-area, NaN and above-the-image boxes are always dropped (clipped/filtered after the crop); a
    negative-width box is treated as its mirror image (kept exactly when that box, mapped alone, survives the crop);
    a box right of / below the image is kept when it lands in the canvas padding; the full official output is the
    clean one plus the kept boxes."""
    meta, arrays = OBJECTS365
    sample = meta["samples"][k]
    kept = {verdict["kind"]: verdict["official_kept"] for verdict in sample["degenerate"]}
    assert sorted(kept) == sorted(DEGENERATE_KINDS)
    assert not any(kept[kind] for kind in ("zero_width", "zero_height", "not_finite", "outside_above"))
    assert sample["official_output"]["num_instances"] == sample["clean_num_instances"] + sum(kept.values())
    negative = next(v["index"] for v in sample["degenerate"] if v["kind"] == "negative_width")
    annotation = sample["dataset_dict"]["annotations"][negative]
    x, y, width, height = annotation["bbox"]
    mirrored = dict(annotation, bbox=[x + width, y, -width, height])
    record = dict(dataset_dict(tmp_path, arrays, k, sample), annotations=[mirrored])
    assert len(run_ours(Objects365LSJMapper, meta, sample, record)["instances"]) == int(kept["negative_width"])


def test_objects365_fixture_has_official_boxes_kept_in_the_padding():
    kept = [v["kind"] for s in OBJECTS365[0]["samples"] for v in s["degenerate"] if v["official_kept"]]
    assert {"outside_right", "outside_below"} & set(kept)


@pytest.mark.parametrize("k", sample_params(OBJECTS365))
def test_objects365_official_padding_mask_is_empty(k):
    """The official mapper also emits `padding_mask` (read nowhere in the official code); it is all False, because
    the crop pads the segmentation with 255 (true) before the negation — so our mapper omits it and loses nothing."""
    meta, arrays = OBJECTS365
    size = meta["input"]["IMAGE_SIZE"]
    assert "padding_mask" in meta["samples"][k]["official_output"]["keys"]
    assert not unpack(arrays[f"s{k}_out_padding_mask"], (size, size)).any()


@pytest.mark.parametrize("fixture", [PANOPTIC, OBJECTS365], ids=["coco_panoptic_lsj", "objects365"])
def test_fixture_covers_flips_crops_padding_and_vanishing(fixture):
    meta, _ = fixture
    samples = meta["samples"]
    flips = [sample["draws"][0][0] == "RandomFlip" and sample["draws"][0][3] < 0.5 for sample in samples]
    assert any(flips) and not all(flips)
    assert {"flip_crop", "noflip_pad", "vanish", "flip_vanish"} <= {sample["case"] for sample in samples}
    assert any(sample["vanished"] for sample in samples)
    assert all([draw[0] for draw in sample["draws"]] == ["RandomFlip", "ResizeScale", "FixedSizeCrop"]
               for sample in samples)
