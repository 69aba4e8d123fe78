"""Training targets built from Detectron2 Instances."""

import pytest
import torch
from detectron2.structures import BitMasks, Boxes, Instances

from openseed.modeling.targets import build_targets, instances_to_target
from openseed.vocabulary import Vocabulary

VOCAB = Vocabulary.from_names(["cat", "dog"], ["sky"])


def _instances(with_masks=True):
    inst = Instances((60, 80))
    inst.gt_classes = torch.tensor([1, 2])
    inst.gt_boxes = Boxes(torch.tensor([[10.0, 20.0, 30.0, 60.0], [0.0, 0.0, 80.0, 10.0]]))
    if with_masks:
        masks = torch.zeros(2, 60, 80, dtype=torch.bool)
        masks[0, 20:60, 10:30] = True
        masks[1, :10] = True
        inst.gt_masks = BitMasks(masks)
    return inst


def test_boxes_are_normalised_by_the_padded_size_and_masks_padded():
    target = instances_to_target(_instances(), (64, 96), "seg", VOCAB, torch.device("cpu"))
    assert target["labels"].dtype == torch.int64 and target["labels"].tolist() == [1, 2]
    assert torch.allclose(target["boxes"][0], torch.tensor([20 / 96, 40 / 64, 20 / 96, 40 / 64]))
    assert torch.allclose(target["boxes"][1], torch.tensor([40 / 96, 5 / 64, 80 / 96, 10 / 64]))
    assert target["is_thing"].tolist() == [True, False]
    assert target["masks"].shape == (2, 64, 96) and target["masks"].dtype == torch.float32
    assert target["masks"][0].sum() == 40 * 20 and target["masks"][:, 60:].sum() == 0
    assert target["masks"][:, :, 80:].sum() == 0


def test_reference_boxes_are_normalised_by_the_image_size():
    target = instances_to_target(_instances(), (64, 96), "seg", VOCAB, torch.device("cpu"), boxes_by_image_size=True)
    assert torch.allclose(target["boxes"][0], torch.tensor([20 / 80, 40 / 60, 20 / 80, 40 / 60]))
    assert target["masks"].shape == (2, 64, 96)


def test_det_targets_have_no_masks_and_plain_tensor_masks_work():
    det = build_targets([_instances(False)], (64, 96), "det", VOCAB, torch.device("cpu"))[0]
    assert "masks" not in det and det["boxes"].shape == (2, 4)
    inst = _instances()
    inst.gt_masks = inst.gt_masks.tensor
    seg = instances_to_target(inst, (60, 80), "seg", VOCAB, torch.device("cpu"))
    assert torch.equal(seg["masks"].bool(), inst.gt_masks)


def test_empty_instances():
    inst = Instances((32, 32))
    inst.gt_classes = torch.zeros(0, dtype=torch.int64)
    inst.gt_boxes = Boxes(torch.zeros(0, 4))
    inst.gt_masks = BitMasks(torch.zeros(0, 32, 32, dtype=torch.bool))
    target = instances_to_target(inst, (32, 32), "seg", VOCAB, torch.device("cpu"))
    assert target["labels"].shape == (0,) and target["boxes"].shape == (0, 4) and target["masks"].shape == (0, 32, 32)


def test_bad_targets_are_rejected():
    inst = _instances()
    inst.gt_classes = torch.tensor([1, 3])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        instances_to_target(inst, (64, 96), "seg", VOCAB, torch.device("cpu"))
    with pytest.raises(ValueError, match="gt_masks"):
        instances_to_target(_instances(False), (64, 96), "seg", VOCAB, torch.device("cpu"))
    with pytest.raises(ValueError, match="exceed"):
        instances_to_target(_instances(), (32, 96), "seg", VOCAB, torch.device("cpu"))
    with pytest.raises(ValueError, match="task"):
        build_targets([_instances()], (64, 96), "panoptic", VOCAB, torch.device("cpu"))
