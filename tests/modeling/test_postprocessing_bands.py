"""Row-band post-processing (identity final resize, mask stride 2 or 4) equals the straightforward reference.

The band path resizes all needed queries a few rows at a time; it must give bit-identical resized logits, and the
same post-processed results as `reference_postprocess` (all queries resized at once) for every task.
"""

import pytest
import torch
from torch.nn import functional as F

from openseed.modeling import postprocessing
from openseed.modeling.postprocessing import ImageGeometry, PostprocessSettings, postprocess
from openseed.modeling.postprocessing.geometry import resize_mask_logits, resize_mask_logits_rows, row_band_factor
from openseed.modeling.postprocessing.pixel_counts import pixel_counts
from openseed.modeling.postprocessing.semantic import SemanticAccumulator
from tests.modeling.test_postprocessing_equivalence import assert_same_results, random_outputs, reference_postprocess

ALL_TASKS = ("semantic", "panoptic", "instance")


def test_identity_resize_skips_the_bicubic_pass_bit_exactly():
    logits = torch.randn(3, 24, 40, generator=torch.Generator().manual_seed(0)) * 20
    geometry = ImageGeometry((90, 150), (96, 160), (90, 150))
    padded = F.interpolate(logits[None], size=(96, 160), mode="bilinear", align_corners=False)[:, :, :90, :150]
    bicubic = F.interpolate(padded, size=(90, 150), mode="bicubic", align_corners=False, antialias=True)[0]
    assert torch.equal(resize_mask_logits(logits, geometry), bicubic)


@pytest.mark.parametrize("factor", [2, 4])
@pytest.mark.parametrize("band", [1, 3, 4, 7])
def test_row_bands_are_bit_identical_to_the_whole_map(factor, band):
    gen = torch.Generator().manual_seed(factor * 10 + band)
    logits = torch.randn(5, 13, 11, generator=gen) * 10
    padded = (13 * factor, 11 * factor)
    geometry = ImageGeometry((padded[0] - 3, padded[1] - 5), padded, (padded[0] - 3, padded[1] - 5))
    assert row_band_factor(13, geometry) == factor
    whole = resize_mask_logits(logits, geometry)
    height = geometry.output_size[0]
    pieces = [resize_mask_logits_rows(logits, geometry, factor, slice(y, min(y + band, height)))
              for y in range(0, height, band)]
    assert torch.equal(torch.cat(pieces, dim=1), whole)
    subset = torch.tensor([4, 1])
    assert torch.equal(resize_mask_logits_rows(logits, geometry, factor, slice(5, 9), subset), whole[subset, 5:9])


def test_band_factor_only_for_identity_resize_and_power_of_two_strides():
    assert row_band_factor(24, ImageGeometry((90, 120), (96, 128), (90, 120))) == 4
    assert row_band_factor(24, ImageGeometry((90, 120), (96, 128), (128, 192))) is None  # real final resize
    assert row_band_factor(32, ImageGeometry((90, 120), (96, 128), (90, 120))) is None  # stride 3
    assert row_band_factor(96, ImageGeometry((90, 120), (96, 128), (90, 120))) is None  # stride 1: nothing to band
    assert row_band_factor(12, ImageGeometry((90, 120), (96, 128), (90, 120))) is None  # stride 8: not bit-exact


@pytest.mark.parametrize("tasks", [ALL_TASKS, ("panoptic", "instance"), ("instance",), ("semantic",)])
@pytest.mark.parametrize("size", [(96, 128), (90, 120), (77, 101)])
@pytest.mark.parametrize("tile_elements", [1, 6 * 4 * 128, 10**9])
@pytest.mark.parametrize("seed", [0, 1])
def test_band_path_equals_reference(monkeypatch, tasks, size, tile_elements, seed):
    calls = []
    real = postprocessing.pipeline.resize_mask_logits_rows
    monkeypatch.setattr(postprocessing.pipeline, "resize_mask_logits_rows",
                        lambda *args, **kwargs: calls.append(1) or real(*args, **kwargs))
    class_logits, mask_logits, boxes, is_thing = random_outputs(seed)
    settings = PostprocessSettings(overlap_threshold=0.5, detections_per_image=50, num_foreground_queries=30,
                                   max_band_elements=tile_elements)
    lean = postprocess(class_logits, mask_logits, boxes, tasks=tasks, input_size=size, padded_size=(96, 128),
                       output_size=size, is_thing=is_thing, settings=settings)
    ref = reference_postprocess(class_logits, mask_logits, boxes, tasks, size, (96, 128), size, is_thing, settings)
    assert calls and (len(calls) > 1) == (tile_elements < 10**9)
    assert_same_results(lean, ref, exact_scores=False)
    if "panoptic" in tasks and seed == 0:
        assert lean["panoptic_seg"][1]  # some segments survive the merge


@pytest.mark.parametrize("seed", [0, 1])
def test_semantic_sum_under_bfloat16_autocast_stays_close_and_float32(seed, monkeypatch):
    """Under CPU bfloat16 autocast the semantic sum takes bfloat16-rounded inputs and accumulates in float32: the
    output stays float32 and every score is within the inputs' rounding (all terms are positive: relative error
    ≤ (1 + 2⁻⁸)² − 1 each, bfloat16's unit roundoff being 2⁻⁸), with the same per-pixel argmax almost everywhere; the other tasks do not change at
    all, and the global GEMM setting is restored. Where oneDNN keeps float32 math under that setting (the AMD EPYC
    tested) the sums are float32 ones; which path ran is seen by the GEMMs made inside the setting."""
    gemms_in_bf16_setting = []
    original_addmm = torch.Tensor.addmm_

    def recording_addmm(band, *args, **kwargs):
        gemms_in_bf16_setting.append(torch.backends.mkldnn.matmul.fp32_precision == "bf16")
        return original_addmm(band, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "addmm_", recording_addmm)
    class_logits, mask_logits, boxes, is_thing = random_outputs(seed, num_queries=60, num_classes=9)
    kwargs = dict(tasks=("semantic", "panoptic", "instance"), input_size=(96, 128), padded_size=(96, 128),
                  output_size=(96, 128), is_thing=is_thing)
    exact = postprocess(class_logits, mask_logits, boxes, **kwargs)
    assert not any(gemms_in_bf16_setting)
    gemms_in_bf16_setting.clear()
    precision_before = torch.backends.mkldnn.matmul.fp32_precision
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = postprocess(class_logits, mask_logits, boxes, **kwargs)
    assert gemms_in_bf16_setting and all(gemms_in_bf16_setting)  # the bfloat16-inputs path ran
    assert mixed["sem_seg"].dtype == torch.float32
    difference = (mixed["sem_seg"] - exact["sem_seg"]).abs()
    assert bool((difference <= ((1 + 2 ** -8) ** 2 - 1) * exact["sem_seg"] + 1e-6).all())
    assert torch.backends.mkldnn.matmul.fp32_precision == precision_before
    agreement = (mixed["sem_seg"].argmax(0) == exact["sem_seg"].argmax(0)).float().mean()
    assert agreement >= 0.99
    assert torch.equal(mixed["panoptic_seg"][0], exact["panoptic_seg"][0])
    assert mixed["panoptic_seg"][1] == exact["panoptic_seg"][1]
    assert torch.equal(mixed["instances"].pred_masks, exact["instances"].pred_masks)
    assert torch.equal(mixed["instances"].scores, exact["instances"].scores)


@pytest.mark.parametrize("shape", [(5, 7, 9), (3, 1, 1), (0, 4, 4)])
def test_pixel_counts_equal_the_boolean_sums(shape):
    generator = torch.Generator().manual_seed(sum(shape))
    masks = torch.rand(shape, generator=generator) > 0.4
    for view in (masks, masks[:, :, : max(shape[2] - 2, 1)]):  # contiguous and a column crop
        counts = pixel_counts(view)
        assert counts.dtype == torch.int32
        assert counts.tolist() == [int(mask.sum()) for mask in view]


@pytest.mark.parametrize("layout", ["words with a tail", "all on", "odd length", "offset by one byte", "crop"])
def test_pixel_counts_of_long_rows_summed_as_words_are_exact(layout):
    """Rows of ≥ 2040 bytes are summed as groups of 255 64-bit words: exact when every byte lane reaches 255 (all
    pixels on), with a tail after the last group, and through the byte-wise fallback for rows that are not whole
    aligned words."""
    generator = torch.Generator().manual_seed(7)
    masks = torch.rand(4, 3, 2 * 8 * 255 + 56, generator=generator) > 0.3  # 2 groups per row and 56 more bytes
    if layout == "all on":
        masks = torch.ones(3, 2, 8 * 255 * 3, dtype=torch.bool)
    elif layout == "odd length":
        masks = masks[..., :-3].contiguous()
    elif layout == "offset by one byte":
        masks = torch.rand(4 * 4096 + 1, generator=generator).gt(0.5)[1:].view(4, 4096)
    elif layout == "crop":
        masks = masks[:, 1:]
    expected = [int(mask.sum()) for mask in masks]
    assert pixel_counts(masks).tolist() == expected
    if layout == "all on":
        assert expected == [2 * 8 * 255 * 3] * 3


def test_semantic_accumulator_writes_first_tiles_adds_later_ones_and_zeroes_unfed_rows():
    """The output is not zero-filled up front: a row's first tile writes it, later tiles (other queries) add to it,
    rows no tile reached are zero, and a tile that overlaps rows fed only in part is an error."""
    generator = torch.Generator().manual_seed(0)
    weights = torch.rand(6, 3, generator=generator)
    probs = torch.rand(6, 8, 5, generator=generator)
    accumulator = SemanticAccumulator(weights, (8, 5))
    accumulator.update(torch.arange(0, 4), slice(0, 6), None, probs[:4, 0:6])
    accumulator.update(torch.arange(4, 6), slice(0, 6), None, probs[4:, 0:6])
    with pytest.raises(ValueError, match="rows 4:8 were fed only in part"):
        accumulator.update(torch.arange(0, 6), slice(4, 8), None, probs[:, 4:8])
    expected = torch.einsum("qk,qhw->khw", weights, probs)
    expected[:, 6:] = 0
    assert torch.allclose(accumulator.result(), expected, atol=1e-6)
    assert SemanticAccumulator(weights, (8, 5)).result().eq(0).all()
