"""Box conversions, GIoU (vs torchvision, finite on degenerate boxes) and point sampling (vs detectron2)."""

import torch
from detectron2.projects.point_rend.point_features import get_uncertain_point_coords_with_randomness
from detectron2.projects.point_rend.point_features import point_sample as d2_point_sample
from torchvision.ops import generalized_box_iou

from openseed.losses.box_ops import (
    box_cxcywh_to_xyxy,
    box_xyxy_to_cxcywh,
    paired_generalized_box_iou,
    pairwise_generalized_box_iou,
)
from openseed.losses.point_sampling import importance_points, point_sample


def _random_xyxy(n, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(n, 2, generator=g)
    b = a + 0.01 + torch.rand(n, 2, generator=g)
    return torch.cat([a, b], 1)


def test_box_conversions_round_trip_and_values():
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.4]])
    assert torch.allclose(box_cxcywh_to_xyxy(boxes), torch.tensor([[0.4, 0.3, 0.6, 0.7]]))
    xyxy = _random_xyxy(7, 0)
    assert torch.allclose(box_cxcywh_to_xyxy(box_xyxy_to_cxcywh(xyxy)), xyxy, atol=1e-6)


def test_giou_matches_torchvision():
    a, b = _random_xyxy(6, 1), _random_xyxy(5, 2)
    assert torch.allclose(pairwise_generalized_box_iou(a, b), generalized_box_iou(a, b), atol=1e-6)
    c = _random_xyxy(6, 3)
    assert torch.allclose(paired_generalized_box_iou(a, c), generalized_box_iou(a, c).diagonal(), atol=1e-6)


def test_giou_hand_values():
    unit = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    assert paired_generalized_box_iou(unit, unit).item() == 1.0
    # disjoint: IoU 0, enclosing box 0..3 x 0..1 (area 3), union 2 -> GIoU = -(3-2)/3
    far = torch.tensor([[2.0, 0.0, 3.0, 1.0]])
    assert abs(paired_generalized_box_iou(unit, far).item() + 1 / 3) < 1e-6


def test_giou_zero_area_is_finite_with_finite_gradient():
    point = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.2, 0.2, 0.0, 0.3]], requires_grad=True)
    same = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.2, 0.2, 0.0, 0.3]])
    giou = paired_generalized_box_iou(box_cxcywh_to_xyxy(point), box_cxcywh_to_xyxy(same))
    assert torch.isfinite(giou).all()
    assert torch.isnan(generalized_box_iou(box_cxcywh_to_xyxy(same), box_cxcywh_to_xyxy(same))).any()
    giou.sum().backward()
    assert torch.isfinite(point.grad).all()


def test_point_sample_matches_detectron2_and_pixel_centres():
    maps = torch.randn(3, 2, 5, 7)
    coords = torch.rand(3, 11, 2)
    assert torch.allclose(point_sample(maps, coords), d2_point_sample(maps, coords, align_corners=False))
    # the centre of pixel (row 2, col 4) of a 5x7 map is ((4 + 0.5) / 7, (2 + 0.5) / 5)
    centre = torch.tensor([[[(4 + 0.5) / 7, (2 + 0.5) / 5]]])
    assert torch.allclose(point_sample(maps[:1], centre)[0, :, 0], maps[0, :, 2, 4])


def test_importance_points_match_detectron2_under_the_same_seed():
    logits = torch.randn(4, 1, 6, 6)
    torch.manual_seed(7)
    ours = importance_points(logits, 50, 3.0, 0.75)
    torch.manual_seed(7)
    ref = get_uncertain_point_coords_with_randomness(logits, lambda x: -x.abs(), 50, 3.0, 0.75)
    assert ours.shape == (4, 50, 2)
    assert torch.equal(ours, ref)


def test_importance_points_prefer_uncertain_regions():
    logits = torch.full((1, 1, 16, 16), 10.0)
    logits[..., :, 8:] = 0.0  # right half uncertain
    coords = importance_points(logits, 400, 3.0, 0.75)
    right_half = (coords[0, :300, 0] > 0.5).float().mean()
    assert right_half > 0.95
