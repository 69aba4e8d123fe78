"""Bounded memory for any image: post-processing at the network's resolution ("network") agrees with the exact
per-query resize ("output") within the tolerances of docs/reliability.md, and never creates a tensor of one
full-resolution map per query (checked by recording every tensor the torch operators create)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from openseed.modeling.postprocessing import PostprocessSettings, postprocess, resize_results
from tests.reliability.scenes import blob_outputs

TASKS = ("panoptic", "instance", "semantic")
IS_THING = [True, True, True, False, False]
INPUT_SIZE = (96, 128)  # masks at stride 4: 24×32


def _category_map(panoptic: torch.Tensor, segments: list[dict]) -> torch.Tensor:
    lookup = torch.full((int(panoptic.max()) + 1,), -1, dtype=torch.int64)
    for segment in segments:
        lookup[segment["id"]] = segment["category_id"]
    return lookup[panoptic.long()]


def _run(raw, output_size, resolution, input_size=INPUT_SIZE, is_thing=IS_THING, **settings):
    return postprocess(*raw, tasks=TASKS, input_size=input_size, padded_size=input_size, output_size=output_size,
                       is_thing=is_thing, settings=PostprocessSettings(resolution=resolution, **settings))


def assert_network_close_to_exact(exact: dict, network: dict, pixel_agreement: float, mask_iou: float,
                                  segment_slack: int = 0) -> None:
    """The tolerances stated in docs/reliability.md ("Bounded memory"); `segment_slack`: how many segments (tiny
    ones at the overlap threshold) may appear or vanish."""
    assert network["panoptic_seg"][0].shape == exact["panoptic_seg"][0].shape
    assert network["panoptic_seg"][0].dtype == torch.int32
    categories = [[s["category_id"] for s in result["panoptic_seg"][1]] for result in (network, exact)]
    if segment_slack == 0:
        assert categories[0] == categories[1]
    assert abs(len(categories[0]) - len(categories[1])) <= segment_slack
    categories = (_category_map(*network["panoptic_seg"]) == _category_map(*exact["panoptic_seg"])).float().mean()
    assert categories >= pixel_agreement
    assert network["sem_seg"].shape == exact["sem_seg"].shape
    assert (network["sem_seg"].argmax(0) == exact["sem_seg"].argmax(0)).float().mean() >= pixel_agreement
    ours, theirs = network["instances"], exact["instances"]
    assert torch.equal(ours.pred_classes, theirs.pred_classes)
    torch.testing.assert_close(ours.pred_boxes.tensor, theirs.pred_boxes.tensor, rtol=1e-5, atol=1e-3)
    assert (ours.scores - theirs.scores).abs().max() < 0.01
    both = (ours.pred_masks & theirs.pred_masks).flatten(1).sum(1)
    either = (ours.pred_masks | theirs.pred_masks).flatten(1).sum(1)
    assert ((both.float() / either.clamp(min=1).float()) >= mask_iou).all()


@pytest.mark.parametrize("output_size", [(240, 320), (150, 200), (97, 129)])
@pytest.mark.parametrize("seed", [0, 1])
def test_network_resolution_agrees_with_exact(output_size, seed):
    raw = blob_outputs(60, 5, (24, 32), seed)
    exact = _run(raw, output_size, "output", detections_per_image=10)
    network = _run(raw, output_size, "network", detections_per_image=10)
    assert len(exact["panoptic_seg"][1]) >= 2
    assert_network_close_to_exact(exact, network, pixel_agreement=0.98, mask_iou=0.9)


@pytest.mark.parametrize("output_size", [INPUT_SIZE, (61, 77), (120, 100)])
def test_network_resolution_is_exact_for_outputs_no_larger_than_the_input(output_size):
    raw = blob_outputs(30, 5, (24, 32), 2)
    exact, network = _run(raw, output_size, "output"), _run(raw, output_size, "network")
    assert torch.equal(exact["panoptic_seg"][0], network["panoptic_seg"][0])
    assert exact["panoptic_seg"][1] == network["panoptic_seg"][1]
    assert torch.equal(exact["sem_seg"], network["sem_seg"])
    assert torch.equal(exact["instances"].pred_masks, network["instances"].pred_masks)


def test_segments_no_output_pixel_shows_are_dropped():
    raw = blob_outputs(60, 5, (24, 32), 0)
    full = _run(raw, INPUT_SIZE, "network", overlap_threshold=0.0)
    network_results = postprocess(*raw, tasks=TASKS, input_size=INPUT_SIZE, padded_size=INPUT_SIZE,
                                  output_size=INPUT_SIZE, is_thing=IS_THING,
                                  settings=PostprocessSettings(overlap_threshold=0.0))
    tiny = resize_results(network_results, (2, 2), max_chunk_elements=1 << 20)
    panoptic, segments = tiny["panoptic_seg"]
    assert full["panoptic_seg"][1] == network_results["panoptic_seg"][1]
    assert len(full["panoptic_seg"][1]) > len(segments)
    assert {s["id"] for s in segments} == set(panoptic.unique().tolist()) - {0}


class LargestTensors(TorchDispatchMode):
    """Records the element count of every tensor a torch operator returns."""

    def __init__(self):
        super().__init__()
        self.numels = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for value in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(value, torch.Tensor):
                self.numels.append(value.numel())
        return out


def test_no_full_resolution_tensor_per_query():
    """60 queries, 5 classes, at most 4 detections: outputs need at most 5 full-resolution maps; one map per query
    (60) must never exist. The exact path is checked to trip the same detector (the check can fail)."""
    raw = blob_outputs(60, 5, (24, 32), 0)
    output_size = (600, 900)
    full_resolution = output_size[0] * output_size[1]
    settings = dict(detections_per_image=4, max_chunk_elements=1 << 25)
    with LargestTensors() as network:
        result = _run(raw, output_size, "network", **settings)
    assert result["sem_seg"].shape == (5, *output_size)
    assert max(network.numels) <= 5 * full_resolution
    with LargestTensors() as exact:
        _run(raw, output_size, "output", **settings)
    assert max(exact.numels) >= 20 * full_resolution


@pytest.mark.slow
def test_network_resolution_on_the_parity_fixture(refdata):
    """The official parity outputs (decoupled Swin-T, regenerated weights, 512×512): exact vs network results at
    two output sizes, with overlap threshold 0 so that segments survive the random weights. Measured at 384² and
    1000²: panoptic category agreement 0.986-0.987 with 48-53 segments (±2 of them), semantic argmax agreement
    1.0, instance mask IoU ≥ 0.98, scores within 1e-4."""
    from detectron2.modeling import build_model  # noqa: PLC0415
    from refdata_utils import official_outputs, official_state_dict, parity_image, parity_vocabulary  # noqa: PLC0415

    from openseed.checkpoint import load_official_weights  # noqa: PLC0415
    from openseed.config import setup_cfg  # noqa: PLC0415
    from openseed.modeling.meta_arch import OpenSeeD  # noqa: F401, PLC0415

    config = Path(__file__).resolve().parents[2] / "configs/openseed/swint_decoupled_coco_o365.yaml"
    model = build_model(setup_cfg(str(config), ["MODEL.DEVICE", "cpu"])).eval()
    state = dict(official_state_dict(refdata))
    for key, buffer in model.state_dict().items():
        state.setdefault(key, buffer)
    load_official_weights(model, state)
    with torch.no_grad():
        images = model.preprocess([{"image": parity_image(refdata)}])
        outputs = model.sem_seg_head(model.backbone(images.tensor), official_outputs(refdata)["text_embeddings"],
                                     task="seg")
    raw = (outputs["pred_logits"][0], outputs["pred_masks"][0], outputs["pred_boxes"][0])
    is_thing = parity_vocabulary(refdata)["is_thing"]
    for output_size in [(640, 640), (1000, 1000)]:
        exact = _run(raw, output_size, "output", input_size=(512, 512), is_thing=is_thing, overlap_threshold=0.0)
        network = _run(raw, output_size, "network", input_size=(512, 512), is_thing=is_thing, overlap_threshold=0.0)
        assert len(exact["panoptic_seg"][1]) > 10
        assert_network_close_to_exact(exact, network, pixel_agreement=0.98, mask_iou=0.97, segment_slack=3)
