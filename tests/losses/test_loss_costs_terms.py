"""Pairwise costs and paired loss terms against independent computations on small hand-built inputs."""

import math

import torch
from torch.nn import functional as F
from torchvision.ops import generalized_box_iou
from torchvision.ops import sigmoid_focal_loss as tv_focal

from openseed.losses.box_ops import box_cxcywh_to_xyxy
from openseed.losses.costs import focal_class_cost, giou_box_cost, l1_box_cost, mask_bce_cost, mask_dice_cost
from openseed.losses.loss_terms import (
    box_giou_sum,
    box_l1_sum,
    mask_bce_sum,
    mask_dice_sum,
    point_sampled_mask_sums,
    sigmoid_focal_loss,
)


def _sigmoid(x):
    return 1 / (1 + math.exp(-x))


def test_focal_class_cost_by_hand():
    logits = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 0.0, 1.0]])
    labels = torch.tensor([2, 0, 2])
    cost = focal_class_cost(logits, labels)
    assert cost.shape == (2, 3)
    for q in range(2):
        for n, k in enumerate(labels.tolist()):
            p = _sigmoid(logits[q, k].item())
            expected = 0.25 * (1 - p) ** 2 * -math.log(p + 1e-6) - 0.75 * p**2 * -math.log(1 - p + 1e-6)
            assert abs(cost[q, n].item() - expected) < 1e-6


def test_box_costs():
    pred = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.3, 0.6, 0.1, 0.4]])
    tgt = torch.tensor([[0.4, 0.5, 0.2, 0.1]])
    assert torch.allclose(l1_box_cost(pred, tgt), torch.tensor([[0.2], [0.6]]), atol=1e-6)
    expected = -generalized_box_iou(box_cxcywh_to_xyxy(pred), box_cxcywh_to_xyxy(tgt))
    assert torch.allclose(giou_box_cost(pred, tgt), expected, atol=1e-6)


def test_mask_costs_by_hand():
    pred = torch.tensor([[1.0, -2.0, 0.0, 3.0], [0.5, 0.5, -0.5, -0.5]])
    tgt = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    bce = mask_bce_cost(pred, tgt)
    dice = mask_dice_cost(pred, tgt)
    for q in range(2):
        for n in range(3):
            expected_bce = F.binary_cross_entropy_with_logits(pred[q], tgt[n]).item()
            assert abs(bce[q, n].item() - expected_bce) < 1e-6
            prob = [_sigmoid(v) for v in pred[q].tolist()]
            y = tgt[n].tolist()
            inter = sum(p * t for p, t in zip(prob, y))
            expected_dice = 1 - (2 * inter + 1) / (sum(prob) + sum(y) + 1)
            assert abs(dice[q, n].item() - expected_dice) < 1e-6


def test_focal_loss_matches_torchvision():
    logits = torch.randn(3, 7, 5)
    targets = (torch.rand(3, 7, 5) > 0.7).float()
    assert torch.allclose(sigmoid_focal_loss(logits, targets), tv_focal(logits, targets, 0.25, 2.0), atol=1e-6)


def test_box_loss_sums():
    pred = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.3, 0.6, 0.1, 0.4]])
    tgt = torch.tensor([[0.4, 0.5, 0.2, 0.1], [0.3, 0.6, 0.1, 0.4]])
    assert abs(box_l1_sum(pred, tgt).item() - 0.2) < 1e-6
    giou = generalized_box_iou(box_cxcywh_to_xyxy(pred), box_cxcywh_to_xyxy(tgt)).diagonal()
    assert abs(box_giou_sum(pred, tgt).item() - (1 - giou).sum().item()) < 1e-6


def test_mask_loss_sums_by_hand():
    logits = torch.tensor([[2.0, -1.0, 0.0], [0.0, 0.0, 4.0]])
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    expected_bce = sum(F.binary_cross_entropy_with_logits(logits[i], targets[i]).item() for i in range(2))
    assert abs(mask_bce_sum(logits, targets).item() - expected_bce) < 1e-6
    expected_dice = 0.0
    for i in range(2):
        prob = logits[i].sigmoid()
        expected_dice += 1 - (2 * (prob * targets[i]).sum().item() + 1) / (prob.sum().item() + targets[i].sum().item() + 1)
    assert abs(mask_dice_sum(logits, targets).item() - expected_dice) < 1e-6


def test_point_sampled_mask_sums_constant_masks():
    # constant masks make the sampled values (almost) independent of the points: only the outer half pixel
    # interpolates with the zero padding, so large maps and uniform points (importance ratio 0; importance
    # sampling would seek exactly that uncertain border) give the closed-form values to ~1e-3
    pred = torch.tensor([1.5, -0.5])[:, None, None].expand(2, 512, 512).clone()
    targets = [torch.stack([torch.ones(512, 512), torch.zeros(512, 512)])]
    bce, dice = point_sampled_mask_sums(pred, targets, [torch.tensor([0, 1])], 1000, 3.0, 0.0)
    expected_bce = F.softplus(torch.tensor(-1.5)) + F.softplus(torch.tensor(-0.5))
    assert abs(bce.item() - expected_bce.item()) < 5e-3
    p0, p1 = _sigmoid(1.5), _sigmoid(-0.5)
    expected_dice = (1 - (2 * 1000 * p0 + 1) / (1000 * p0 + 1000 + 1)) + (1 - 1 / (1000 * p1 + 1))
    assert abs(dice.item() - expected_dice) < 5e-3


def test_point_sampled_mask_sums_repeated_targets_equal_explicit_copies():
    # a target paired twice (conditioned queries) must be sampled at each pairing's own points
    pred = torch.randn(3, 6, 6)
    masks = (torch.rand(2, 24, 24) > 0.5).float()
    ids = torch.tensor([1, 0, 1])
    torch.manual_seed(3)
    ours = point_sampled_mask_sums(pred, [masks], [ids], 64, 3.0, 0.75)
    torch.manual_seed(3)
    copies = masks[ids]
    explicit = point_sampled_mask_sums(pred, [copies], [torch.arange(3)], 64, 3.0, 0.75)
    assert torch.allclose(ours[0], explicit[0]) and torch.allclose(ours[1], explicit[1])


def test_point_sampled_mask_sums_empty_is_connected_zero():
    pred = torch.randn(0, 4, 4, requires_grad=True)
    bce, dice = point_sampled_mask_sums(pred, [torch.zeros(0, 8, 8)], [torch.zeros(0, dtype=torch.int64)], 10, 3.0, 0.75)
    assert bce.item() == 0 and dice.item() == 0 and bce.requires_grad
