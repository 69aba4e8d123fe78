"""O365 mask assistance: pseudo-masks, ramp, effect on det matching, assistance loss keys."""

import pytest
import torch
from loss_synthetic import make_outputs, make_targets

from openseed.config import get_cfg
from openseed.losses import MaskAssistSettings, SetCriterion
from openseed.losses.mask_assist import box_region, build_pseudo_targets


def _assist_cfg(loss_weight=0.0, ramp_iters=0):
    cfg = get_cfg()
    cfg.MODEL.DECODER.TRAIN_NUM_POINTS = 256
    cfg.MODEL.DECODER.O365_MASK_ASSIST = True
    cfg.MODEL.DECODER.MASK_ASSIST.LOSS_WEIGHT = loss_weight
    cfg.MODEL.DECODER.MASK_ASSIST.RAMP_ITERS = ramp_iters
    return cfg


def test_box_region_pixel_centres():
    region = box_region(torch.tensor([[0.5, 0.5, 0.5, 0.25]]), 8, 8)[0]
    # x in [0.25, 0.75] -> columns 2..5 (centres 0.3125..0.6875); y in [0.375, 0.625] -> rows 3..4
    expected = torch.zeros(8, 8, dtype=torch.bool)
    expected[3:5, 2:6] = True
    assert torch.equal(region, expected)


def test_pseudo_targets_threshold_clip_and_validity():
    logits = torch.full((1, 3, 8, 8), -5.0, requires_grad=True)
    with torch.no_grad():
        logits[0, 0, :, :4] = 5.0  # left half confident
        logits[0, 1] = 0.1  # sigmoid 0.525 everywhere
    assist = {"pred_masks": logits, "valid": torch.tensor([[True, True, False]])}
    target = {"labels": torch.tensor([0, 1]), "boxes": torch.tensor([[0.5, 0.5, 1.0, 0.5], [0.5, 0.5, 0.5, 0.5]])}
    clipped = build_pseudo_targets(assist, [target], threshold=0.5, clip_to_box=True)[0]
    assert not clipped["masks"].requires_grad
    assert clipped["masks"].shape == (2, 8, 8)
    assert clipped["masks"][0].sum() == 4 * 4  # left half ∩ rows 2..5
    assert torch.equal(clipped["masks"][1].bool(), box_region(target["boxes"][1:], 8, 8)[0])
    assert clipped["mask_valid"].tolist() == [True, True]
    strict = build_pseudo_targets(assist, [target], threshold=0.6, clip_to_box=False)[0]
    assert strict["masks"][0].sum() == 32 and strict["mask_valid"].tolist() == [True, False]  # empty -> invalid
    none = build_pseudo_targets(None, [target], threshold=0.5, clip_to_box=True)[0]
    assert none["mask_valid"].tolist() == [False, False]
    with pytest.raises(ValueError, match="3 targets"):
        three = {"labels": torch.tensor([0, 1, 2]), "boxes": torch.rand(3, 4)}
        build_pseudo_targets({"pred_masks": logits[:, :2], "valid": assist["valid"][:, :2]}, [three], 0.5, True)


def test_ramp():
    settings = MaskAssistSettings(loss_weight=2.0, ramp_iters=100)
    assert [settings.loss_scale(i) for i in (0, 50, 100, 1000)] == [0.0, 1.0, 2.0, 2.0]
    assert MaskAssistSettings(loss_weight=0.5, ramp_iters=0).loss_scale(0) == 0.5


def _tied_det_batch():
    """Two foreground queries with equal class scores; query 1 has the slightly better box, query 0 the mask that
    agrees with the conditioned (pseudo) mask of the only GT."""
    outputs = make_outputs(batch=1, num_foreground=2, num_background=1, classes=3, aux_sets=0, task="det",
                           dn_groups=None, det_masks=True, mask_size=16)
    del outputs["interm_outputs"]
    gt_box = torch.tensor([0.5, 0.5, 0.5, 0.5])
    with torch.no_grad():
        outputs["pred_logits"][:] = 0.0
        outputs["pred_boxes"][0, 0] = gt_box + torch.tensor([0.02, 0, 0, 0])
        outputs["pred_boxes"][0, 1] = gt_box + torch.tensor([0.01, 0, 0, 0])
        left = torch.zeros(16, 16)
        left[4:12, 4:8] = 1.0  # the object fills the left half of its box
        outputs["pred_masks"][0, 0] = 8 * left - 4
        outputs["pred_masks"][0, 1] = 4 - 8 * left
    outputs["mask_assist"] = {"pred_masks": (8 * left - 4)[None, None], "valid": torch.tensor([[True]])}
    targets = [{"labels": torch.tensor([1]), "boxes": gt_box[None], "is_thing": torch.tensor([True])}]
    return outputs, targets


def test_assistance_changes_det_matching_to_the_mask_that_agrees():
    outputs, targets = _tied_det_batch()
    cfg = get_cfg()
    cfg.MODEL.DECODER.TRAIN_NUM_POINTS = 256
    plain = SetCriterion(cfg)
    assisted = SetCriterion(_assist_cfg())
    (q_plain, _), = plain.matcher(outputs, targets, use_masks=False, num_foreground=None)
    pseudo = build_pseudo_targets(outputs["mask_assist"], targets, 0.5, True)
    (q_assist, _), = assisted.assist_matcher(outputs, pseudo, use_masks=True, num_foreground=None)
    assert q_plain.tolist() == [1] and q_assist.tolist() == [0]
    losses = assisted(outputs, targets, "det", 2)
    assert set(losses) == {"loss_mask_cls_0", "loss_bbox_0", "loss_giou_0",
                           "loss_mask_cls_0_dn", "loss_bbox_0_dn", "loss_giou_0_dn"}


def test_assistance_loss_keys_ramp_and_gradient():
    targets = make_targets([2, 3], task="det")
    outputs = make_outputs(task="det", det_masks=True, dn_groups=None)
    outputs["mask_assist"] = {"pred_masks": 3 * torch.randn(2, 3, 8, 8), "valid": torch.ones(2, 3, dtype=torch.bool)}
    criterion = SetCriterion(_assist_cfg(loss_weight=1.0, ramp_iters=10))
    values = {}
    for iteration in (0, 5, 10):
        criterion.iteration = iteration
        torch.manual_seed(0)
        values[iteration] = criterion(outputs, targets, "det", 6)
    assist_keys = {k for k in values[10] if "assist" in k}
    assert len(values[10]) == 63 + 22 and len(assist_keys) == 22
    assert {f"loss_assist_bce_{i}" for i in range(10)} | {"loss_assist_bce_0_interm"} <= assist_keys
    assert all(values[0][k].item() == 0 for k in assist_keys)
    assert values[10]["loss_assist_dice_0"].item() > 0
    assert values[5]["loss_assist_bce_3"].item() == pytest.approx(0.5 * values[10]["loss_assist_bce_3"].item(), rel=1e-5)
    values[10]["loss_assist_bce_0"].backward()
    assert outputs["pred_masks"].grad.abs().sum() > 0


def test_assistance_requires_det_masks():
    outputs = make_outputs(task="det", dn_groups=None)
    with pytest.raises(ValueError, match="pred_masks"):
        SetCriterion(_assist_cfg())(outputs, make_targets([1, 1], task="det"), "det", 6)
