"""The official behaviours kept as quirk flags leave their footprint in the recorded fixtures.

The replay tests (test_training_step_fixtures.py) reproduce the official step with the flags on; these tests show,
from the official records alone, that the clean defaults would differ on the same batch:

- MODEL.DECODER.REFERENCE_THING_ID_BOUND (80): with a vocabulary of fewer than 80 names every target counts as a
  thing, so the official matcher puts stuff targets on foreground queries (clean: background queries).
- MODEL.DECODER.DET_INTERM_KEEP_BACKGROUND: the official matcher pairs Objects365 boxes with background queries of
  the encoder proposals (clean: foreground queries only).
- Reference text normalisation: detection names keep "a-b" (clean "consistent" mode rewrites them as "b a").
- MODEL.DECODER.REFERENCE_TARGET_BOXES_BY_IMAGE_SIZE: with images padded to the size divisibility (e.g. 300 px ->
  320), the official targets divide boxes by the unpadded image size (clean: by the padded size).
"""

from __future__ import annotations

import pytest
import torch

from tests.fidelity.training_step_replay import FIXTURES, load_fixture, unpacked_masks

NUM_FOREGROUND = 300
CASES = sorted(p.name for p in FIXTURES.glob("step_*.pt"))


def _with_task(task: str) -> list[str]:
    return [name for name in CASES if task in load_fixture(name)["targets"]]


@pytest.mark.parametrize("name", _with_task("seg"))
def test_official_matcher_puts_stuff_on_foreground_queries(name):
    fixture = load_fixture(name)
    is_thing = fixture["vocab"]["seg"]["is_thing"]
    assert len(is_thing) < 80
    stuff_on_foreground = 0
    for key, per_image in fixture["matching"].items():
        if not key.startswith("seg/"):
            continue
        for (queries, target_ids), target in zip(per_image, fixture["targets"]["seg"]):
            labels = target["labels"][target_ids]
            stuff = [not is_thing[int(label)] for label in labels]
            stuff_on_foreground += sum(bool(s) and int(q) < NUM_FOREGROUND for s, q in zip(stuff, queries))
            assert (queries < NUM_FOREGROUND).all(), key
    assert stuff_on_foreground > 0


@pytest.mark.parametrize("name", _with_task("det"))
def test_official_detection_proposals_match_background_queries(name):
    fixture = load_fixture(name)
    queries = [q for q, _ in fixture["matching"]["det/0_interm"]]
    assert any((q >= NUM_FOREGROUND).any() for q in queries)
    for layer in range(10):
        assert all((q < NUM_FOREGROUND).all() for q, _ in fixture["matching"][f"det/{layer}"])


@pytest.mark.parametrize("name", _with_task("det"))
def test_official_detection_prompts_keep_compound_names(name):
    fixture = load_fixture(name)
    compound = [n for n in fixture["vocab"]["det"]["names"] if n.count("-") == 1 and "/" not in n]
    prompts = " ".join(fixture["prompts"]["det"])
    assert compound and all(n.lower() in prompts for n in compound)


@pytest.mark.parametrize("name", _with_task("seg"))
def test_fixture_masks_are_the_padded_batch_masks(name):
    fixture = load_fixture(name)
    for item, target in zip(fixture["batch"]["coco"], fixture["targets"]["seg"]):
        masks, padded = unpacked_masks(item), unpacked_masks(target)
        height, width = masks.shape[-2:]
        assert (padded[:, :height, :width] == masks).all() and not padded[:, height:].any()


def test_official_target_boxes_are_normalised_by_the_unpadded_image():
    padded_cases = 0
    for name in _with_task("seg"):
        fixture = load_fixture(name)
        for item, target in zip(fixture["batch"]["coco"], fixture["targets"]["seg"]):
            height, width = item["image"].shape[-2:]
            x0, y0, x1, y1 = item["boxes"].unbind(-1)
            cxcywh = torch.stack(((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0), dim=-1)
            expected = cxcywh / torch.tensor([width, height, width, height], dtype=torch.float32)
            torch.testing.assert_close(target["boxes"].float(), expected, rtol=0, atol=1e-6)
            padded_cases += height % 32 != 0 or width % 32 != 0
    assert padded_cases > 0, "no fixture with padding: the flag's effect is not shown"
