"""HungarianMatcher: optimal vs brute force, independent cost computation, decoupled split, degenerate inputs."""

import itertools
import math

import pytest
import torch
from loss_synthetic import make_targets, prediction_set
from torch.nn import functional as F
from torchvision.ops import generalized_box_iou

from openseed.losses.box_ops import box_cxcywh_to_xyxy
from openseed.losses.matcher import HungarianMatcher

WEIGHTS = {"cost_class": 4.0, "cost_mask": 5.0, "cost_dice": 5.0, "cost_box": 5.0, "cost_giou": 2.0}


def _matcher(num_points=64):
    return HungarianMatcher(**WEIGHTS, num_points=num_points)


def _independent_cost(logits, boxes, labels, target_boxes, pred_masks=None, target_masks=None, coords=None):
    """(Q, N) cost written from the formulas of docs/official_behaviours.md §7.2 with plain loops and torch.nn.functional."""
    q_count, n_count = logits.shape[0], len(labels)
    cost = torch.zeros(q_count, n_count)
    giou = generalized_box_iou(box_cxcywh_to_xyxy(boxes), box_cxcywh_to_xyxy(target_boxes))
    if pred_masks is not None:
        grid = (2 * coords - 1)[:, :, None, :]  # (1, P, 1, 2)
        pred_pts = F.grid_sample(pred_masks[None], grid, align_corners=False)[0, :, :, 0]
        tgt_pts = F.grid_sample(target_masks[None], grid, align_corners=False)[0, :, :, 0]
    for q in range(q_count):
        for n in range(n_count):
            p = torch.sigmoid(logits[q, labels[n]]).item()
            cls = 0.25 * (1 - p) ** 2 * -math.log(p + 1e-6) - 0.75 * p**2 * -math.log(1 - p + 1e-6)
            l1 = (boxes[q] - target_boxes[n]).abs().sum().item()
            total = 4 * cls + 5 * l1 + 2 * -giou[q, n].item()
            if pred_masks is not None:
                bce = F.binary_cross_entropy_with_logits(pred_pts[q], tgt_pts[n]).item()
                prob = pred_pts[q].sigmoid()
                dice = 1 - (2 * (prob * tgt_pts[n]).sum() + 1) / (prob.sum() + tgt_pts[n].sum() + 1)
                total += 5 * bce + 5 * dice.item()
            cost[q, n] = total
    return cost


def _brute_force_minimum(cost):
    q_count, n_count = cost.shape
    return min(
        sum(cost[q, n].item() for n, q in enumerate(queries))
        for queries in itertools.permutations(range(q_count), n_count)
    )


@pytest.mark.parametrize("seed", range(4))
def test_det_matching_is_optimal_vs_brute_force(seed):
    torch.manual_seed(seed)
    outputs = prediction_set(1, 5, 4, None, requires_grad=False)
    target = make_targets([3], classes=4, task="det", seed=seed)[0]
    (queries, target_ids), = _matcher()(outputs, [target], use_masks=False, num_foreground=None)
    cost = _independent_cost(outputs["pred_logits"][0], outputs["pred_boxes"][0], target["labels"], target["boxes"])
    assert sorted(target_ids.tolist()) == [0, 1, 2]
    assert len(set(queries.tolist())) == 3
    matched = sum(cost[q, n].item() for q, n in zip(queries.tolist(), target_ids.tolist()))
    assert matched == pytest.approx(_brute_force_minimum(cost), abs=1e-4)


@pytest.mark.parametrize("seed", range(3))
def test_seg_matching_with_mask_costs_is_optimal(seed):
    torch.manual_seed(seed)
    outputs = prediction_set(1, 4, 4, 8, requires_grad=False)
    target = make_targets([3], classes=4, image_size=32, seed=seed)[0]
    matcher = _matcher(num_points=200)
    torch.manual_seed(100 + seed)
    (queries, target_ids), = matcher(outputs, [target], use_masks=True, num_foreground=None)
    torch.manual_seed(100 + seed)
    coords = torch.rand(1, 200, 2)  # the same points the matcher drew
    cost = _independent_cost(
        outputs["pred_logits"][0], outputs["pred_boxes"][0], target["labels"], target["boxes"],
        outputs["pred_masks"][0], target["masks"], coords,
    )
    matched = sum(cost[q, n].item() for q, n in zip(queries.tolist(), target_ids.tolist()))
    assert matched == pytest.approx(_brute_force_minimum(cost), abs=1e-4)


def test_cost_matrix_equals_independent_computation():
    torch.manual_seed(5)
    outputs = prediction_set(1, 6, 4, 8, requires_grad=False)
    target = make_targets([4], classes=4, image_size=32, seed=5)[0]
    matcher = _matcher(num_points=300)
    torch.manual_seed(9)
    cost = matcher.cost_matrix(outputs, target, 0, use_masks=True)
    torch.manual_seed(9)
    expected = _independent_cost(
        outputs["pred_logits"][0], outputs["pred_boxes"][0], target["labels"], target["boxes"],
        outputs["pred_masks"][0], target["masks"], torch.rand(1, 300, 2),
    )
    assert torch.allclose(cost, expected, atol=1e-4)


@pytest.mark.parametrize("seed", range(5))
def test_decoupled_split_is_respected(seed):
    torch.manual_seed(seed)
    num_foreground, num_queries = 6, 10
    outputs = prediction_set(3, num_queries, 5, 8, requires_grad=False)
    targets = make_targets([5, 0, 7], classes=5, thing_classes=3, seed=seed)
    indices = _matcher()(outputs, targets, use_masks=True, num_foreground=num_foreground)
    for target, (queries, target_ids) in zip(targets, indices):
        is_thing = target["is_thing"][target_ids]
        assert (queries[is_thing] < num_foreground).all(), "thing target on a background query"
        assert (queries[~is_thing] >= num_foreground).all(), "stuff target on a foreground query"
        things, stuff = int(target["is_thing"].sum()), int((~target["is_thing"]).sum())
        assert int(is_thing.sum()) == min(things, num_foreground)
        assert int((~is_thing).sum()) == min(stuff, num_queries - num_foreground)
        assert len(set(queries.tolist())) == len(queries)


def test_reference_thing_id_bound_splits_by_class_id():
    # quirk flag: the reference takes class ids below 80 as things whatever the vocabulary says
    torch.manual_seed(0)
    num_foreground = 6
    outputs = prediction_set(1, 10, 5, 8, requires_grad=False)
    target = make_targets([5], classes=5, thing_classes=2, seed=3)[0]
    assert not target["is_thing"].all()
    quirk = HungarianMatcher(**WEIGHTS, num_points=64, reference_thing_id_bound=80)
    (queries, _), = quirk(outputs, [target], use_masks=True, num_foreground=num_foreground)
    assert len(queries) == 5 and (queries < num_foreground).all()  # every id < 80: all on foreground queries
    bound = HungarianMatcher(**WEIGHTS, num_points=64, reference_thing_id_bound=2)
    (queries, target_ids), = bound(outputs, [target], use_masks=True, num_foreground=num_foreground)
    below = target["labels"][target_ids] < 2
    assert (queries[below] < num_foreground).all() and (queries[~below] >= num_foreground).all()


def test_no_split_without_background_queries():
    # non-decoupled model: Q == num_foreground; stuff targets must still be matched (docs/official_behaviours.md §14 item 11 fixed)
    torch.manual_seed(0)
    outputs = prediction_set(1, 6, 5, 8, requires_grad=False)
    target = make_targets([4], classes=5, thing_classes=0, seed=1)[0]  # all stuff
    (queries, target_ids), = _matcher()(outputs, [target], use_masks=True, num_foreground=6)
    assert sorted(target_ids.tolist()) == [0, 1, 2, 3]


def test_empty_targets_and_non_finite_predictions():
    outputs = prediction_set(2, 4, 3, None, requires_grad=False)
    targets = make_targets([0, 2], classes=3, task="det")
    indices = _matcher()(outputs, targets, use_masks=False, num_foreground=None)
    assert len(indices[0][0]) == 0 and len(indices[1][0]) == 2
    outputs["pred_logits"][1, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="image 1"):
        _matcher()(outputs, targets, use_masks=False, num_foreground=None)


def test_zero_area_boxes_match_without_nan():
    outputs = prediction_set(1, 3, 3, None, requires_grad=False)
    outputs["pred_boxes"][0, 0] = torch.tensor([0.5, 0.5, 0.0, 0.0])
    target = {"labels": torch.tensor([1, 2]), "boxes": torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.1, 0.1, 0.0, 0.2]])}
    (queries, _), = _matcher()(outputs, [target], use_masks=False, num_foreground=None)
    assert len(queries) == 2
