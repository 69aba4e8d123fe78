"""Post-processing on hand-built outputs whose results are worked out by hand (docs/official_behaviours.md §9)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from openseed.config import get_cfg
from openseed.modeling import postprocessing
from openseed.modeling.postprocessing import ImageGeometry, PostprocessSettings, postprocess


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# Panoptic case on a 4×8 image whose input, padded and output sizes equal the mask size, so both resizes are the
# identity. Classes: 0 = thing, 1 and 2 = stuff.
#   q0 class 0, mask on columns 0-1                  -> wins them: segment 1 (thing)
#   q1 class 1, mask on rows 0-1 of columns 2-7      -> loses column 2 to q4, 10/12 ≥ 0.8: segment 2 (stuff)
#   q2 class 1, mask on rows 2-3 of columns 2-7      -> same class: merged into segment 2
#   q3 sigmoid score 0.2 < 0.25 (sharpened ≈ 0.93), mask everywhere -> filtered before the merge
#   q4 class 0, mask on columns 0-2 (logit 1 on 0-1, 6 on 2) -> wins only column 2: 4/12 < 0.8, skipped (void)
PANOPTIC_IS_THING = [True, False, False]


def panoptic_case():
    class_logits = torch.tensor(
        [[3.0, -5.0, -5.0], [-5.0, 2.0, -5.0], [-5.0, 2.0, -5.0], [-9.0, -9.0, math.log(0.2 / 0.8)], [1.0, -5.0, -5.0]]
    )
    masks = torch.full((5, 4, 8), -4.0)
    masks[0, :, 0:2] = 4.0
    masks[1, 0:2, 2:] = 4.0
    masks[2, 2:4, 2:] = 4.0
    masks[3] = 8.0
    masks[4, :, 0:2] = 1.0
    masks[4, :, 2] = 6.0
    boxes = torch.full((5, 4), 0.5)
    return class_logits, masks, boxes


def run_panoptic(settings, is_thing=PANOPTIC_IS_THING):
    class_logits, masks, boxes = panoptic_case()
    result = postprocess(
        class_logits, masks, boxes, tasks="panoptic", input_size=(4, 8), padded_size=(4, 8), output_size=(4, 8),
        is_thing=is_thing, settings=settings,
    )
    return result["panoptic_seg"]


def columns_map(column_ids):
    """4×8 id map with one id per column."""
    return torch.tensor(column_ids, dtype=torch.int32).expand(4, 8)


def test_identity_geometry_keeps_mask_logits_unchanged():
    masks = panoptic_case()[1]
    resized = postprocessing.resize_mask_logits(masks, ImageGeometry((4, 8), (4, 8), (4, 8)))
    assert torch.equal(resized, masks)


@pytest.mark.parametrize("output_size", [(20, 30), (90, 122)])
def test_resize_is_bilinear_to_padded_then_crop_then_antialiased_bicubic(output_size):
    """Checked against Pillow, whose BILINEAR upsampling and (always antialiased) BICUBIC resize are the reference."""
    logits = torch.randn(2, 12, 16, generator=torch.Generator().manual_seed(0)) * 3
    ours = postprocessing.resize_mask_logits(logits, ImageGeometry((45, 61), (48, 64), output_size))
    assert ours.shape == (2, *output_size) and ours.dtype == torch.float32
    for query in range(2):
        padded = Image.fromarray(logits[query].numpy()).resize((64, 48), Image.BILINEAR)
        expected = padded.crop((0, 0, 61, 45)).resize(output_size[::-1], Image.BICUBIC)
        assert np.abs(ours[query].numpy() - np.asarray(expected)).max() < 1e-4


def test_panoptic_merges_stuff_and_skips_low_overlap():
    panoptic, segments = run_panoptic(PostprocessSettings())
    assert panoptic.dtype == torch.int32
    assert torch.equal(panoptic, columns_map([1, 1, 0, 2, 2, 2, 2, 2]))
    assert segments == [{"id": 1, "isthing": True, "category_id": 0}, {"id": 2, "isthing": False, "category_id": 1}]


def test_panoptic_overlap_zero_keeps_partly_covered_thing():
    panoptic, segments = run_panoptic(PostprocessSettings(overlap_threshold=0.0))
    assert torch.equal(panoptic, columns_map([1, 1, 3, 2, 2, 2, 2, 2]))
    assert segments[2] == {"id": 3, "isthing": True, "category_id": 0}
    assert len(segments) == 3


def test_panoptic_thing_decision_comes_from_vocabulary_flags():
    panoptic, segments = run_panoptic(PostprocessSettings(overlap_threshold=0.0), is_thing=[False, False, False])
    # q4 (class 0) is now stuff and merges into q0's segment.
    assert torch.equal(panoptic, columns_map([1, 1, 1, 2, 2, 2, 2, 2]))
    assert segments == [{"id": 1, "isthing": False, "category_id": 0}, {"id": 2, "isthing": False, "category_id": 1}]


def test_panoptic_without_sharpening_uses_raw_scores():
    # Raw scores: q1 0.881·sigmoid(4) = 0.865 beats q4 0.731·sigmoid(6) = 0.729 on column 2.
    panoptic, segments = run_panoptic(PostprocessSettings(transform_eval=False))
    assert torch.equal(panoptic, columns_map([1, 1, 2, 2, 2, 2, 2, 2]))
    assert [s["id"] for s in segments] == [1, 2]


def test_panoptic_with_nothing_above_threshold_is_void():
    panoptic, segments = run_panoptic(PostprocessSettings(object_mask_threshold=0.99))
    assert torch.equal(panoptic, torch.zeros(4, 8, dtype=torch.int32)) and segments == []


def test_semantic_is_sharpened_weighted_sum_of_mask_probabilities():
    class_logits = torch.tensor([[1.0, -1.0], [0.0, 2.0]])
    masks = torch.tensor([[[0.0, 2.0], [-2.0, 4.0]], [[1.0, 1.0], [1.0, 1.0]]])
    for transform in (True, False):
        settings = PostprocessSettings(transform_eval=transform, temperature=0.06)
        sem_seg = postprocess(
            class_logits, masks, torch.zeros(2, 4), tasks="semantic", input_size=(2, 2), padded_size=(2, 2),
            output_size=(2, 2), is_thing=[True, False], settings=settings,
        )["sem_seg"]
        weights = []
        for logits in class_logits.tolist():
            probs = [sigmoid(v) for v in logits]
            if transform:
                exps = [math.exp(p / 0.06) for p in probs]
                probs = [e / sum(exps) for e in exps]
            weights.append(probs)
        expected = [
            [[sum(weights[q][k] * sigmoid(masks[q, y, x].item()) for q in range(2)) for x in range(2)] for y in range(2)]
            for k in range(2)
        ]
        assert sem_seg.shape == (2, 2, 2) and sem_seg.dtype == torch.float32
        torch.testing.assert_close(sem_seg, torch.tensor(expected), rtol=1e-5, atol=1e-6)


# Instance case: input 20×30 padded to 32×32, output 40×60; box scale = padded/input·output = 64 on both axes.
# Queries 0-1 are foreground, query 2 is background (never an instance). Class 0 = thing, 1 = stuff.
INSTANCE_GEOMETRY = dict(input_size=(20, 30), padded_size=(32, 32), output_size=(40, 60))


def instance_case():
    class_logits = torch.tensor([[2.0, -1.0], [0.5, 1.0], [5.0, 5.0]])
    masks = torch.stack([torch.full((8, 8), 2.0), torch.full((8, 8), -1.0), torch.full((8, 8), 3.0)])
    boxes = torch.tensor([[0.5, 0.5, 0.5, 0.25], [0.25, 0.25, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]])
    return class_logits, masks, boxes


def run_instances(tasks, **settings):
    class_logits, masks, boxes = instance_case()
    settings = PostprocessSettings(detections_per_image=3, num_foreground_queries=2, **settings)
    result = postprocess(
        class_logits, None if tasks == "detection" else masks, boxes, tasks=tasks, is_thing=[True, False],
        settings=settings, **INSTANCE_GEOMETRY,
    )
    instances = result["instances"]
    # topk(sorted=False) order is unspecified: list entries as (q0, c0), (q1, c0), (q1, c1) (box x0 desc, class).
    keys = [(-box[0], label) for box, label in zip(instances.pred_boxes.tensor.tolist(), instances.pred_classes.tolist())]
    return instances[sorted(range(len(keys)), key=keys.__getitem__)]


BOX_Q0 = [16.0, 24.0, 48.0, 40.0]  # (0.5, 0.5, 0.5, 0.25) -> (0.25, 0.375, 0.75, 0.625)·64
BOX_Q1 = [0.0, 0.0, 32.0, 32.0]  # (0.25, 0.25, 0.5, 0.5) -> (0, 0, 0.5, 0.5)·64


def test_instances_top_k_over_foreground_queries_with_mask_scores():
    instances = run_instances("instance")
    assert instances.image_size == (40, 60)
    # top-3 of the 2×2 foreground scores: (q0, c0) 0.881, (q1, c1) 0.731, (q1, c0) 0.622; not (q0, c1) 0.269
    assert instances.pred_classes.tolist() == [0, 0, 1]
    torch.testing.assert_close(instances.pred_boxes.tensor, torch.tensor([BOX_Q0, BOX_Q1, BOX_Q1]))
    # q0's mask logit is 2 everywhere -> full mask with mean probability sigmoid(2); q1's is empty -> score 0.
    expected = torch.tensor([sigmoid(2.0) * sigmoid(2.0), 0.0, 0.0])
    torch.testing.assert_close(instances.scores, expected, rtol=1e-6, atol=1e-7)
    assert instances.pred_masks.dtype == torch.bool and instances.pred_masks.shape == (3, 40, 60)
    assert instances.pred_masks[0].all() and not instances.pred_masks[1:].any()


def test_instances_keep_only_things_when_panoptic_is_requested():
    instances = run_instances(("instance", "panoptic"))
    assert instances.pred_classes.tolist() == [0, 0]
    torch.testing.assert_close(instances.pred_boxes.tensor, torch.tensor([BOX_Q0, BOX_Q1]))


def test_focus_on_box_uses_class_scores():
    instances = run_instances("instance", focus_on_box=True)
    expected = torch.tensor([sigmoid(2.0), sigmoid(0.5), sigmoid(1.0)])
    torch.testing.assert_close(instances.scores, expected, rtol=1e-6, atol=0)


def test_detection_has_boxes_and_class_scores_but_no_masks():
    instances = run_instances("detection")
    assert not instances.has("pred_masks")
    assert instances.image_size == (40, 60)
    assert instances.pred_classes.tolist() == [0, 0, 1]
    torch.testing.assert_close(instances.scores, torch.tensor([sigmoid(2.0), sigmoid(0.5), sigmoid(1.0)]))
    torch.testing.assert_close(instances.pred_boxes.tensor, torch.tensor([BOX_Q0, BOX_Q1, BOX_Q1]))


@pytest.mark.parametrize(
    "tasks, expected_rows",
    [
        ("panoptic", 4),  # q0, q1, q2, q4 (q3 is filtered)
        ("instance", 2),  # q0 and q1 (q1 appears twice in the top-k but is resized once)
        ("detection", 0),
        ("semantic", 5),
        (("semantic", "panoptic", "instance"), 5),  # each query once
    ],
)
def test_only_needed_queries_are_resized_each_once(monkeypatch, tasks, expected_rows):
    resized_rows = []
    real_resize = postprocessing.pipeline.resize_mask_logits

    def counting_resize(mask_logits, geometry):
        resized_rows.append(mask_logits.shape[0])
        return real_resize(mask_logits, geometry)

    monkeypatch.setattr(postprocessing.pipeline, "resize_mask_logits", counting_resize)
    class_logits, masks, boxes = panoptic_case()
    settings = PostprocessSettings(detections_per_image=3, num_foreground_queries=2, max_chunk_elements=2 * 4 * 8)
    postprocess(class_logits, masks, boxes, tasks=tasks, input_size=(4, 8), padded_size=(4, 8), output_size=(4, 8),
                is_thing=PANOPTIC_IS_THING, settings=settings)
    assert sum(resized_rows) == expected_rows
    assert all(rows <= 2 for rows in resized_rows)


def test_settings_from_config():
    cfg = get_cfg()
    cfg.MODEL.DECODER.TEST.OVERLAP_THRESHOLD = 0.0
    cfg.MODEL.DECODER.TEST.DETECTIONS_PER_IMAGE = 100
    cfg.MODEL.DECODER.NUM_OBJECT_QUERIES_TEST = 200
    settings = PostprocessSettings.from_config(cfg)
    assert settings == PostprocessSettings(
        object_mask_threshold=0.25, overlap_threshold=0.0, transform_eval=True, temperature=0.06,
        focus_on_box=False, detections_per_image=100, num_foreground_queries=200,
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(tasks="panoptc"), "unknown or empty"),
        (dict(tasks=("instance", "detection")), "only one"),
        (dict(tasks="instance", mask_logits=None), "need mask logits"),
        (dict(tasks="panoptic", is_thing=[True, False]), "one flag per class"),
        (dict(tasks="panoptic", input_size=(5, 8)), "larger than padded_size"),
        (dict(tasks="panoptic", boxes=torch.zeros(4, 4)), "one per query"),
    ],
)
def test_bad_arguments_are_rejected_with_clear_errors(kwargs, message):
    class_logits, masks, boxes = panoptic_case()
    arguments = dict(
        class_logits=class_logits, mask_logits=masks, boxes=boxes, input_size=(4, 8), padded_size=(4, 8),
        output_size=(4, 8), is_thing=PANOPTIC_IS_THING,
    )
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        postprocess(arguments.pop("class_logits"), arguments.pop("mask_logits"), arguments.pop("boxes"), **arguments)


@pytest.mark.parametrize("field", ["detections_per_image", "num_foreground_queries", "max_chunk_elements",
                                   "max_band_elements"])
def test_settings_counts_must_be_positive(field):
    with pytest.raises(ValueError, match=f"{field}.* must be positive"):
        PostprocessSettings(**{field: 0})
