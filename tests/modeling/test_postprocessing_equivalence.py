"""The lean post-processing equals a straightforward reference of the official algorithm on random inputs.

`reference_postprocess` below follows the official code path literally (all queries resized at once, one einsum, a
per-query panoptic loop, instance masks gathered for every top-k entry). It lives here, not in the package.
"""

from __future__ import annotations

import pytest
import torch
from detectron2.structures import Boxes, Instances
from torch.nn import functional as F

from openseed.modeling.postprocessing import PostprocessSettings, postprocess


def reference_postprocess(class_logits, mask_logits, boxes, tasks, input_size, padded_size, output_size, is_thing, s):
    """Official numerics (docs/official_behaviours.md §9), written plainly (memory-hungry on purpose)."""
    masks = reference_resize(mask_logits, input_size, padded_size, output_size)
    thing_ids = {i for i, flag in enumerate(is_thing) if flag}
    out = {}
    if "semantic" in tasks:
        probs = class_logits.sigmoid()
        if s.transform_eval:
            probs = F.softmax(probs / s.temperature, dim=-1)
        out["sem_seg"] = torch.einsum("qc,qhw->chw", probs, masks.sigmoid())
    if "panoptic" in tasks:
        out["panoptic_seg"] = _reference_panoptic(class_logits, masks, thing_ids, s)
    if "instance" in tasks or "detection" in tasks:
        out["instances"] = _reference_instances(
            class_logits, masks, boxes, input_size, padded_size, output_size, thing_ids, s, tasks
        )
    return out


def reference_resize(mask_logits, input_size, padded_size, output_size):
    """All queries at once: bilinear to the padded size, crop, bicubic+antialias to the output size."""
    masks = F.interpolate(mask_logits[None], size=padded_size, mode="bilinear", align_corners=False)
    masks = masks[:, :, : input_size[0], : input_size[1]]
    return F.interpolate(masks, size=output_size, mode="bicubic", align_corners=False, antialias=True)[0]


def _reference_panoptic(class_logits, masks, thing_ids, s, merged=None):
    """Official merge loop; appends the kept positions merged into an earlier stuff segment to `merged` if given."""
    scores, labels = class_logits.sigmoid().max(-1)
    keep = scores > s.object_mask_threshold
    if s.transform_eval:
        scores, labels = F.softmax(class_logits.sigmoid() / s.temperature, dim=-1).max(-1)
    cur_scores, cur_classes, cur_masks = scores[keep], labels[keep], masks.sigmoid()[keep]
    panoptic = torch.zeros(masks.shape[-2:], dtype=torch.int32, device=masks.device)
    segments, stuff_ids, next_id = [], {}, 0
    if len(cur_masks) == 0:
        return panoptic, segments
    winners = (cur_scores.view(-1, 1, 1) * cur_masks).argmax(0)
    for k in range(len(cur_classes)):
        category = cur_classes[k].item()
        isthing = category in thing_ids
        won = (winners == k).sum().item()
        own = (cur_masks[k] >= 0.5).sum().item()
        segment = (winners == k) & (cur_masks[k] >= 0.5)
        if won > 0 and own > 0 and segment.sum().item() > 0:
            if won / own < s.overlap_threshold:
                continue
            if not isthing:
                if category in stuff_ids:
                    panoptic[segment] = stuff_ids[category]
                    if merged is not None:
                        merged.append(k)
                    continue
                stuff_ids[category] = next_id + 1
            next_id += 1
            panoptic[segment] = next_id
            segments.append({"id": next_id, "isthing": bool(isthing), "category_id": int(category)})
    return panoptic, segments


def _reference_instances(class_logits, masks, boxes, input_size, padded_size, output_size, thing_ids, s, tasks):
    num_classes = class_logits.shape[1]
    fg = s.num_foreground_queries
    scale_h = padded_size[0] / input_size[0] * output_size[0]
    scale_w = padded_size[1] / input_size[1] * output_size[1]
    cx, cy, w, h = boxes.unbind(-1)
    xyxy = torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)
    xyxy = xyxy * torch.tensor([scale_w, scale_h, scale_w, scale_h], device=boxes.device)
    scores = class_logits[:fg].sigmoid()
    labels = torch.arange(num_classes, device=scores.device).repeat(scores.shape[0])
    top_scores, top_indices = scores.flatten().topk(s.detections_per_image, sorted=False)
    top_labels = labels[top_indices]
    queries = top_indices // num_classes
    if "panoptic" in tasks:
        keep = torch.tensor([label.item() in thing_ids for label in top_labels], dtype=torch.bool, device=scores.device)
        top_scores, top_labels, queries = top_scores[keep], top_labels[keep], queries[keep]
    result = Instances(tuple(output_size))
    result.pred_boxes = Boxes(xyxy[:fg][queries])
    if "detection" in tasks:
        result.scores = top_scores
    else:
        selected = masks[:fg][queries]
        binary = (selected > 0).float()
        mask_scores = (selected.sigmoid().flatten(1) * binary.flatten(1)).sum(1) / (binary.flatten(1).sum(1) + 1e-6)
        result.pred_masks = binary.bool()
        result.scores = top_scores if s.focus_on_box else top_scores * mask_scores
    result.pred_classes = top_labels
    return result


def random_outputs(seed, num_queries=40, num_classes=7, low_res=(24, 32)):
    """Blob-like mask logits (a few strong queries, many weak ones) and class logits with several near-duplicates."""
    gen = torch.Generator().manual_seed(seed)
    class_logits = torch.randn(num_queries, num_classes, generator=gen) * 2.0 - 1.0
    ys = torch.linspace(0, 1, low_res[0]).view(-1, 1)
    xs = torch.linspace(0, 1, low_res[1]).view(1, -1)
    centers = torch.rand(num_queries, 2, generator=gen)
    radius = 0.05 + 0.2 * torch.rand(num_queries, 1, 1, generator=gen)
    distance = ((ys - centers[:, 0, None, None]) ** 2 + (xs - centers[:, 1, None, None]) ** 2).sqrt()
    mask_logits = 8.0 * (radius - distance) / radius + torch.randn(num_queries, *low_res, generator=gen)
    boxes = torch.rand(num_queries, 4, generator=gen) * 0.5 + 0.25
    is_thing = torch.rand(num_classes, generator=gen) < 0.5
    is_thing[0], is_thing[1] = True, False
    return class_logits, mask_logits, boxes, is_thing.tolist()


def assert_same_instances(lean: Instances, ref: Instances, exact_scores: bool):
    assert lean.image_size == ref.image_size
    assert torch.equal(lean.pred_classes, ref.pred_classes)
    assert torch.equal(lean.pred_boxes.tensor, ref.pred_boxes.tensor)
    assert lean.has("pred_masks") == ref.has("pred_masks")
    if ref.has("pred_masks"):
        assert lean.pred_masks.dtype == torch.bool
        assert torch.equal(lean.pred_masks, ref.pred_masks)
    if exact_scores:
        assert torch.equal(lean.scores, ref.scores)
    else:
        torch.testing.assert_close(lean.scores, ref.scores, rtol=1e-6, atol=1e-7)


def assert_same_results(lean: dict, ref: dict, exact_scores: bool):
    """Ids, segments, classes, boxes and masks must be equal; float sums may differ in summation order only."""
    assert lean.keys() == ref.keys()
    if "sem_seg" in ref:
        torch.testing.assert_close(lean["sem_seg"], ref["sem_seg"], rtol=1e-5, atol=1e-5)
    if "panoptic_seg" in ref:
        assert lean["panoptic_seg"][0].dtype == torch.int32
        assert torch.equal(lean["panoptic_seg"][0], ref["panoptic_seg"][0])
        assert lean["panoptic_seg"][1] == ref["panoptic_seg"][1]
    if "instances" in ref:
        assert_same_instances(lean["instances"], ref["instances"], exact_scores)


ALL_SEG_TASKS = ("semantic", "panoptic", "instance")

# Output sizes with H·W a multiple of 64 keep every float bit-identical on CPU (the vectorised sigmoid has no scalar
# tail); so do mask widths above 16 (narrower ones take a CPU bilinear path that vectorises across channels).
CASES = [
    # (tasks, input_size, output_size, object_mask_threshold, overlap_threshold, transform_eval, focus_on_box)
    (ALL_SEG_TASKS, (90, 120), (128, 192), 0.25, 0.8, True, False),
    (ALL_SEG_TASKS, (90, 120), (64, 80), 0.25, 0.0, True, False),
    (("panoptic",), (96, 128), (96, 128), 0.5, 0.0, True, False),
    (("panoptic", "instance"), (80, 128), (160, 256), 0.7, 0.3, False, False),
    (("instance",), (90, 120), (128, 192), 0.25, 0.8, True, True),
    (("semantic",), (90, 120), (192, 256), 0.25, 0.8, False, False),
    (("detection",), (90, 120), (192, 256), 0.25, 0.8, True, False),
    (("detection", "panoptic"), (90, 120), (128, 192), 0.25, 0.0, True, False),
]


def run_case(case, seed, queries_per_chunk, device):
    tasks, input_size, output_size, object_thr, overlap_thr, transform, focus = case
    padded_size = (96, 128)
    class_logits, mask_logits, boxes, is_thing = (
        t.to(device) if torch.is_tensor(t) else t for t in random_outputs(seed)
    )
    settings = PostprocessSettings(
        object_mask_threshold=object_thr,
        overlap_threshold=overlap_thr,
        transform_eval=transform,
        focus_on_box=focus,
        detections_per_image=50,
        num_foreground_queries=30,
        max_chunk_elements=queries_per_chunk * padded_size[0] * padded_size[1],
        max_band_elements=queries_per_chunk * padded_size[0] * padded_size[1],
    )
    lean = postprocess(
        class_logits,
        None if tasks == ("detection",) else mask_logits,
        boxes,
        tasks=tasks,
        input_size=input_size,
        padded_size=padded_size,
        output_size=output_size,
        is_thing=is_thing,
        settings=settings,
    )
    ref = reference_postprocess(
        class_logits, mask_logits, boxes, tasks, input_size, padded_size, output_size, is_thing, settings
    )
    # Mask scores are row sums; torch splits a single row across threads, so only scores without masks are bitwise.
    assert_same_results(lean, ref, exact_scores=focus or "detection" in tasks)
    for value in lean.values():
        tensor = value[0] if isinstance(value, tuple) else value if torch.is_tensor(value) else value.scores
        assert tensor.device.type == torch.device(device).type


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("queries_per_chunk", [3, 1000])
def test_lean_equals_reference(case, seed, queries_per_chunk):
    run_case(case, seed, queries_per_chunk, "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_lean_equals_reference_on_cuda():
    for case in CASES:
        for queries_per_chunk in (3, 1000):
            run_case(case, 0, queries_per_chunk, "cuda")


def test_random_cases_exercise_every_branch():
    """The random inputs above reach stuff merging, thing segments, overlap skips and thing filtering."""
    class_logits, mask_logits, boxes, is_thing = random_outputs(3)
    settings = PostprocessSettings(overlap_threshold=0.8, detections_per_image=50, num_foreground_queries=30)
    strict = reference_postprocess(
        class_logits, mask_logits, boxes, ("panoptic",), (90, 120), (96, 128), (128, 192), is_thing, settings
    )
    full_masks = reference_resize(mask_logits, (90, 120), (96, 128), (128, 192))
    thing_ids = {i for i, flag in enumerate(is_thing) if flag}
    merged = []
    _, loose_segments = _reference_panoptic(
        class_logits, full_masks, thing_ids, PostprocessSettings(overlap_threshold=0.0), merged
    )
    strict_segments = strict["panoptic_seg"][1]
    assert 0 < len(strict_segments) < len(loose_segments)
    assert merged
    assert any(s["isthing"] for s in strict_segments) and any(not s["isthing"] for s in strict_segments)
    thing_classes = [s["category_id"] for s in loose_segments if s["isthing"]]
    assert len(thing_classes) > len(set(thing_classes))
    instances = reference_postprocess(
        class_logits, mask_logits, boxes, ("instance", "panoptic"), (90, 120), (96, 128), (128, 192), is_thing,
        settings,
    )["instances"]
    assert 0 < len(instances) < 50
    assert all(is_thing[c] for c in instances.pred_classes.tolist())


@pytest.mark.parametrize("output_size", [(77, 103), (141, 201)])
def test_lean_equals_reference_at_odd_sizes(output_size):
    """At arbitrary sizes the sigmoid may differ in the last bit between chunkings; masks and ids still agree."""
    class_logits, mask_logits, boxes, is_thing = random_outputs(3)
    settings = PostprocessSettings(overlap_threshold=0.5, detections_per_image=60, num_foreground_queries=30,
                                   max_chunk_elements=5 * 96 * 128)
    lean = postprocess(class_logits, mask_logits, boxes, tasks=ALL_SEG_TASKS, input_size=(91, 121),
                       padded_size=(96, 128), output_size=output_size, is_thing=is_thing, settings=settings)
    ref = reference_postprocess(class_logits, mask_logits, boxes, ALL_SEG_TASKS, (91, 121), (96, 128), output_size,
                                is_thing, settings)
    assert_same_results(lean, ref, exact_scores=False)
