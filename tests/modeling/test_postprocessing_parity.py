"""Post-processing of our model's raw outputs against the official post-processed results (refdata parity fixture).

The decoupled Swin-T model is loaded with the regenerated official weights through the checkpoint converter and run
on the parity image with the fixture's text embeddings (the text encoder's prompt ensemble has its own tests). The raw
outputs agree with the official ones to ~1e-5, and the random-weight class scores all lie in 0.49–0.55, so results
are compared exactly where no tie exists and as agreement rates where ties can flip (refdata README).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from detectron2.modeling import build_model
from refdata_utils import official_outputs, official_state_dict, parity_image, parity_vocabulary

import openseed.modeling  # noqa: F401  (registers the meta-architecture)
from openseed.checkpoint import load_official_weights
from openseed.config import setup_cfg
from openseed.modeling.postprocessing import PostprocessSettings, postprocess

pytestmark = pytest.mark.slow

CONFIG = Path(__file__).resolve().parents[2] / "configs/openseed/swint_decoupled_coco_o365.yaml"
SIZE = (512, 512)


@pytest.fixture(scope="module")
def raw_outputs(refdata):
    model = build_model(setup_cfg(str(CONFIG), ["MODEL.DEVICE", "cpu"])).eval()
    state = dict(official_state_dict(refdata))
    for key, buffer in model.state_dict().items():
        state.setdefault(key, buffer)  # the regenerated weights omit the deterministic Swin buffers
    load_official_weights(model, state)
    reference = official_outputs(refdata)
    with torch.no_grad():
        images = model.preprocess([{"image": parity_image(refdata), "height": SIZE[0], "width": SIZE[1]}])
        outputs = model.sem_seg_head(model.backbone(images.tensor), reference["text_embeddings"], task="seg")
    assert tuple(images.tensor.shape[-2:]) == SIZE
    assert (outputs["pred_logits"] - reference["pred_logits"]).abs().max() < 1e-4
    return outputs["pred_logits"][0], outputs["pred_masks"][0], outputs["pred_boxes"][0]


def run(raw_outputs, refdata, tasks, **settings):
    is_thing = parity_vocabulary(refdata)["is_thing"]
    return postprocess(*raw_outputs, tasks=tasks, input_size=SIZE, padded_size=SIZE, output_size=SIZE,
                       is_thing=is_thing, settings=PostprocessSettings(**settings))


@pytest.mark.parametrize("object_threshold", [0.25, 0.5])
def test_panoptic_merge_matches_official(raw_outputs, refdata, object_threshold):
    reference = official_outputs(refdata)
    prefix = f"post_extra.panoptic.overlap0.0_objthr{object_threshold}"
    panoptic, segments = run(raw_outputs, refdata, "panoptic", overlap_threshold=0.0,
                             object_mask_threshold=object_threshold)["panoptic_seg"]
    assert len(segments) > 10
    assert segments == reference[f"{prefix}.segments_info"]
    agreement = (panoptic == reference[f"{prefix}.seg"]).float().mean().item()
    assert agreement > 0.999


def test_default_thresholds_semantic_and_instances_match_official(raw_outputs, refdata):
    reference = official_outputs(refdata)
    results = run(raw_outputs, refdata, ("semantic", "panoptic", "instance"))

    panoptic, segments = results["panoptic_seg"]
    assert segments == reference["post.panoptic_segments_info"] == []
    assert torch.equal(panoptic, reference["post.panoptic_seg"].to(panoptic.dtype))

    sem_seg = results["sem_seg"]
    assert (sem_seg.argmax(0) == reference["post.sem_seg.argmax"]).float().mean() > 0.99
    assert (sem_seg[:, ::8, ::8] - reference["post.sem_seg.every8px"]).abs().max() < 1e-4

    ours = _by_class_then_score(results["instances"].pred_classes, results["instances"].scores)
    official = _by_class_then_score(reference["post.instances.pred_classes"], reference["post.instances.scores"])
    instances = results["instances"]
    assert len(instances) == len(reference["post.instances.scores"]) == 181
    assert torch.equal(instances.pred_classes[ours], reference["post.instances.pred_classes"][official])
    torch.testing.assert_close(instances.scores[ours], reference["post.instances.scores"][official],
                               rtol=0, atol=1e-5)
    torch.testing.assert_close(instances.pred_boxes.tensor[ours], reference["post.instances.pred_boxes"][official],
                               rtol=0, atol=1e-3)
    areas = instances.pred_masks.flatten(1).sum(1)[ours]
    official_areas = reference["post.instances.pred_masks_area"][official].to(areas.dtype)
    assert ((areas - official_areas).abs() <= 2 + official_areas // 1000).all()


def _by_class_then_score(classes: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Indices ordering instances by class, then by descending score (topk(sorted=False) order is unspecified)."""
    by_score = scores.argsort(descending=True, stable=True)
    return by_score[classes[by_score].argsort(stable=True)]
