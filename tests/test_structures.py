"""Shared structures: box conversions (hand values, round trip) and the decoder's outputs against their declared
keys and shapes (`DecoderOutputs`, `PredictionSet`)."""

import torch

from openseed.losses import box_ops
from openseed.modeling.decoder import BoxPrompts
from openseed.structures import (
    DecoderOutputs,
    DenoisingMeta,
    MaskAssistOutputs,
    PredictionSet,
    box_cxcywh_to_xyxy,
    box_xyxy_to_cxcywh,
)
from tests.modeling.test_decoder_predictor import DIM_PROJ, NUM_BG, NUM_FG, inputs, make_decoder  # noqa: F401


def test_box_conversions_by_hand_and_round_trip():
    cxcywh = torch.tensor([[0.5, 0.4, 0.2, 0.6], [0.1, 0.9, 0.0, 0.2]])
    xyxy = torch.tensor([[0.4, 0.1, 0.6, 0.7], [0.1, 0.8, 0.1, 1.0]])
    torch.testing.assert_close(box_cxcywh_to_xyxy(cxcywh), xyxy)
    torch.testing.assert_close(box_xyxy_to_cxcywh(xyxy), cxcywh)
    batch = torch.rand(3, 5, 4)
    torch.testing.assert_close(box_xyxy_to_cxcywh(box_cxcywh_to_xyxy(batch)), batch)
    assert box_ops.box_cxcywh_to_xyxy is box_cxcywh_to_xyxy  # one implementation, re-exported by box_ops


def keys(typed_dict) -> set[str]:
    return set(typed_dict.__required_keys__ | typed_dict.__optional_keys__)


def _check_set(prediction, batch: int, queries: int, classes: int, mask_size: int, allowed=PredictionSet) -> None:
    assert set(prediction) <= keys(allowed), set(prediction) - keys(allowed)
    assert prediction["pred_logits"].shape == (batch, queries, classes)
    assert prediction["pred_boxes"].shape == (batch, queries, 4)
    if "pred_masks" in prediction:
        assert prediction["pred_masks"].shape == (batch, queries, mask_size, mask_size)
    if "valid" in prediction:
        assert prediction["valid"].shape == (batch, queries) and prediction["valid"].dtype == torch.bool


def test_decoder_outputs_have_the_declared_keys_and_shapes(inputs):  # noqa: F811
    features, mask_features, text, targets = inputs
    batch, classes, mask_size = 2, text.shape[0], mask_features.shape[-1]
    seg = make_decoder().train()(features, mask_features, text, targets=targets, task="seg")
    assist = make_decoder(o365_mask_assist=True).train()(features, mask_features, text, targets=targets, task="det")
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.3]], [[0.6, 0.4, 0.3, 0.3]]])
    with torch.no_grad():
        prompted = make_decoder().eval()(features, mask_features, text, task="det",
                                         box_prompts=BoxPrompts(boxes, torch.ones(2, 1, dtype=torch.bool),
                                                                torch.randn(2, 1, DIM_PROJ)))
    for outputs, queries in ((seg, NUM_FG + NUM_BG), (assist, NUM_FG), (prompted, NUM_FG)):
        _check_set(outputs, batch, queries, classes, mask_size, allowed=DecoderOutputs)
        for aux in outputs["aux_outputs"]:
            _check_set(aux, batch, queries, classes, mask_size)
        _check_set(outputs["interm_outputs"], batch, NUM_FG + NUM_BG, classes, mask_size)
        assert outputs["num_foreground"] == NUM_FG
    for outputs in (seg, assist):
        assert set(outputs["dn_meta"]) == keys(DenoisingMeta)
        denoising = outputs["dn_meta"]["num_groups"] * outputs["dn_meta"]["group_size"]
        _check_set(outputs["dn_outputs"], batch, denoising, classes, mask_size, allowed=DecoderOutputs)
        for aux in outputs["dn_outputs"]["aux_outputs"]:
            _check_set(aux, batch, denoising, classes, mask_size)
    assert set(assist["mask_assist"]) == keys(MaskAssistOutputs)
    assert assist["mask_assist"]["pred_masks"].shape[:2] == assist["mask_assist"]["valid"].shape
    _check_set(prompted["prompt_outputs"], batch, 1, classes, mask_size)
    assert "valid" in prompted["prompt_outputs"] and prompted["dn_outputs"] is None
