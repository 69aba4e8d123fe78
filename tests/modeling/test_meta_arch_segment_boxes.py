"""Box-prompted segmentation (`OpenSeeD.segment_boxes`, docs/official_behaviours.md §6.3) on the tiny CPU config."""

import pytest
import torch
from detectron2.modeling import build_model

from openseed.config import setup_cfg
from openseed.vocabulary import Vocabulary

VOCAB = Vocabulary.from_names(["cat", "dog"], ["sky"])


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(setup_cfg("configs/tiny/tiny_decoupled.yaml")).eval()


def _inputs():
    gen = torch.Generator().manual_seed(0)
    return [{"image": torch.randint(0, 256, (3, 96, 128), dtype=torch.uint8, generator=gen), "height": 192,
             "width": 256},
            {"image": torch.randint(0, 256, (3, 128, 128), dtype=torch.uint8, generator=gen)}]


def test_one_mask_per_box_in_output_pixels(model):
    boxes = [torch.tensor([[10.0, 20.0, 120.0, 150.0], [130.0, 10.0, 250.0, 100.0]]), [[0, 0, 64, 64]]]
    with torch.no_grad():
        results = model.segment_boxes(_inputs(), boxes)
    first, second = results
    assert len(first) == 2 and len(second) == 1
    assert first.image_size == (192, 256) and first.pred_masks.shape == (2, 192, 256)
    assert first.pred_masks.dtype == torch.bool and second.pred_masks.shape == (1, 128, 128)
    # the tiny model's box head starts at zero: the refined box is the prompt box (in output pixels)
    assert torch.allclose(first.pred_boxes.tensor, boxes[0], atol=0.05)
    assert torch.allclose(second.pred_boxes.tensor, torch.tensor([[0.0, 0.0, 64.0, 64.0]]), atol=0.05)
    assert ((first.scores >= 0) & (first.scores <= 1)).all()
    assert first.pred_classes.tolist() == [0, 0]  # generic vocabulary ("object",)


def test_concepts_and_vocabulary_label_the_masks(model):
    inputs = _inputs()[:1]
    boxes = [[[10, 20, 120, 150], [130, 10, 250, 100]]]
    with torch.no_grad():
        by_concept = model.segment_boxes(inputs, boxes, concepts=[["dog", "cat"]])[0]
        by_vocab = model.segment_boxes(inputs, boxes, concepts=[["dog", "cat"]], vocabulary=VOCAB)[0]
        no_concept = model.segment_boxes(inputs, boxes)[0]
    assert by_concept.pred_classes.tolist() == [1, 0]  # sorted unique concepts: ("cat", "dog")
    assert set(by_vocab.pred_classes.tolist()) <= {0, 1, 2}
    # the concept changes the query content, hence the mask logits
    assert not torch.equal(by_concept.scores, no_concept.scores)


def test_prompting_does_not_change_regular_inference(model):
    inputs = _inputs()[:1]
    with torch.no_grad():
        before = model(inputs, vocabulary=VOCAB, task="semantic")[0]["sem_seg"]
        model.segment_boxes(inputs, [[[10, 20, 120, 150]]])
        after = model(inputs, vocabulary=VOCAB, task="semantic")[0]["sem_seg"]
    assert torch.equal(before, after)


def test_boxes_outside_the_image_are_clipped_with_a_warning(model):
    with torch.no_grad(), pytest.warns(UserWarning, match="clipped"):
        clipped = model.segment_boxes(_inputs()[1:], [[[-20, -20, 60, 300]]])[0]
    with torch.no_grad():
        inside = model.segment_boxes(_inputs()[1:], [[[0, 0, 60, 128]]])[0]
    assert torch.equal(clipped.pred_masks, inside.pred_masks)


def test_invalid_prompts(model):
    with pytest.raises(ValueError, match="box sets"):
        model.segment_boxes(_inputs(), [[[0, 0, 10, 10]]])
    with pytest.raises(ValueError, match="no area"):
        model.segment_boxes(_inputs()[1:], [[[50, 50, 40, 60]]])
    with pytest.raises(ValueError, match="concepts"):
        model.segment_boxes(_inputs()[1:], [[[0, 0, 10, 10]]], concepts=[["cat", "dog"]])
    with pytest.raises(ValueError, match="3×H×W"):
        model.segment_boxes([{"image": torch.zeros(4, 32, 32, dtype=torch.uint8)}], [[[0, 0, 10, 10]]])
    empty = model.segment_boxes(_inputs()[1:], [[]])[0]
    assert len(empty) == 0 and empty.pred_masks.shape == (0, 128, 128)
    model.train()
    try:
        with pytest.raises(RuntimeError, match="eval"):
            model.segment_boxes(_inputs()[1:], [[[0, 0, 10, 10]]])
    finally:
        model.eval()


def test_network_resolution_gives_output_sized_masks_and_boxes():
    """Decided at the network input (POSTPROCESS_RESOLUTION network, the Predictor's default) for an output larger
    than the input: masks and boxes come back at the output size, as with the "output" resolution."""
    torch.manual_seed(0)
    cfg = setup_cfg("configs/tiny/tiny_decoupled.yaml", ["MODEL.DECODER.TEST.POSTPROCESS_RESOLUTION", "network"])
    network = build_model(cfg).eval()
    exact = build_model(setup_cfg("configs/tiny/tiny_decoupled.yaml")).eval()
    exact.load_state_dict(network.state_dict())
    inputs = _inputs()[:1]  # 96×128 input, output 192×256
    boxes = [torch.tensor([[10.0, 20.0, 120.0, 150.0], [130.0, 10.0, 250.0, 100.0]])]
    with torch.no_grad():
        coarse = network.segment_boxes(inputs, boxes)[0]
        fine = exact.segment_boxes(inputs, boxes)[0]
    assert coarse.image_size == (192, 256) and coarse.pred_masks.shape == (2, 192, 256)
    assert torch.allclose(coarse.pred_boxes.tensor, boxes[0], atol=0.05)
    assert torch.allclose(coarse.pred_boxes.tensor, fine.pred_boxes.tensor, atol=1e-3)
    agreement = (coarse.pred_masks == fine.pred_masks).float().mean()
    assert agreement > 0.95
