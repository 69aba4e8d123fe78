"""SetCriterion: key sets, weights and normalisation by hand, conditioned-query losses, degenerate batches, gradients."""

import pytest
import torch
import torch.multiprocessing as mp
from loss_synthetic import all_prediction_tensors, make_outputs, make_targets
from torchvision.ops import generalized_box_iou, sigmoid_focal_loss

from openseed.config import get_cfg
from openseed.losses import HungarianMatcher, SetCriterion
from openseed.losses.box_ops import box_cxcywh_to_xyxy
from openseed.losses.criterion import average_num_targets

TERMS_SEG = ("mask_cls", "mask_bce", "mask_dice", "bbox", "giou")
TERMS_DET = ("mask_cls", "bbox", "giou")
WEIGHTS = {"mask_cls": 4.0, "mask_bce": 5.0, "mask_dice": 5.0, "bbox": 5.0, "giou": 2.0}


def _criterion(**overrides):
    cfg = get_cfg()
    cfg.MODEL.DECODER.TRAIN_NUM_POINTS = 256
    return SetCriterion(cfg, **overrides)


def expected_keys(terms, num_sets):
    keys = {f"loss_{t}_{i}" for t in terms for i in range(num_sets)}
    keys |= {f"loss_{t}_0_interm" for t in terms}
    keys |= {f"loss_{t}_{i}_dn" for t in terms for i in range(num_sets)}
    return keys


@pytest.mark.parametrize(("task", "terms", "count"), [("seg", TERMS_SEG, 105), ("det", TERMS_DET, 63)])
def test_key_sets_are_stable_and_match_spec_counts(task, terms, count):
    criterion = _criterion()
    with_gt = criterion(make_outputs(task=task), make_targets([3, 2], task=task), task, 6)
    no_gt = criterion(make_outputs(task=task, dn_groups=None), make_targets([0, 0], task=task), task, 6)
    assert set(with_gt) == set(no_gt) == expected_keys(terms, 10)
    assert len(with_gt) == count
    for losses in (with_gt, no_gt):
        assert all(torch.isfinite(v) and v.requires_grad for v in losses.values())


def test_losses_are_weighted():
    outputs, targets = make_outputs(), make_targets([3, 2])
    torch.manual_seed(0)
    weighted = _criterion()(outputs, targets, "seg", 6)
    torch.manual_seed(0)
    unit = _criterion(weights=dict.fromkeys(WEIGHTS, 1.0))(outputs, targets, "seg", 6)
    for key, value in weighted.items():
        term = key.split("_")[1] + ("_" + key.split("_")[2] if key.startswith("loss_mask") else "")
        assert value.item() == pytest.approx(WEIGHTS[term] * unit[key].item(), rel=1e-5), key


def test_matching_losses_by_hand():
    criterion = _criterion(deep_supervision=False, dn_enabled=False)
    outputs = make_outputs(task="det", num_foreground=5, classes=4, aux_sets=0, dn_groups=None)
    del outputs["interm_outputs"]
    targets = make_targets([2, 1], classes=4, task="det")
    losses = criterion(outputs, targets, "det", 5)
    assert set(losses) == {"loss_mask_cls_0", "loss_bbox_0", "loss_giou_0"}

    indices = HungarianMatcher(get_cfg())(outputs, targets, use_masks=False, num_foreground=None)
    one_hot = torch.zeros_like(outputs["pred_logits"])
    pred_boxes, tgt_boxes = [], []
    for b, (q, j) in enumerate(indices):
        one_hot[b, q, targets[b]["labels"][j]] = 1
        pred_boxes.append(outputs["pred_boxes"][b, q])
        tgt_boxes.append(targets[b]["boxes"][j])
    pred_boxes, tgt_boxes = torch.cat(pred_boxes), torch.cat(tgt_boxes)
    num_masks = 3
    focal = sigmoid_focal_loss(outputs["pred_logits"], one_hot, 0.25, 2.0).sum() / num_masks
    l1 = (pred_boxes - tgt_boxes).abs().sum() / num_masks
    giou = (1 - generalized_box_iou(box_cxcywh_to_xyxy(pred_boxes), box_cxcywh_to_xyxy(tgt_boxes)).diagonal()).sum()
    assert losses["loss_mask_cls_0"].item() == pytest.approx(4 * focal.item(), rel=1e-5)
    assert losses["loss_bbox_0"].item() == pytest.approx(5 * l1.item(), rel=1e-5)
    assert losses["loss_giou_0"].item() == pytest.approx(2 * giou.item() / num_masks, rel=1e-5)


def test_conditioned_query_losses_by_hand():
    # counts [2, 1], s = 2 groups of G = 2 slots: image 0 slots 0,1,2,3 <-> GT 0,1,0,1; image 1 slots 0,2 <-> GT 0
    criterion = _criterion(deep_supervision=False)
    outputs = make_outputs(task="det", classes=4, aux_sets=0, dn_groups=2, dn_group_size=2)
    targets = make_targets([2, 1], classes=4, task="det")
    losses = criterion(outputs, targets, "det", 6)
    dn = outputs["dn_outputs"]
    pairs = [(0, 0, 0), (0, 1, 1), (0, 2, 0), (0, 3, 1), (1, 0, 0), (1, 2, 0)]
    normaliser, slots_per_image = 3 * 2, 4
    cls_sum, l1_sum = 0.0, 0.0
    for image, slot, gt in pairs:
        one_hot = torch.zeros(4)
        one_hot[targets[image]["labels"][gt]] = 1
        cls_sum += sigmoid_focal_loss(dn["pred_logits"][image, slot], one_hot, 0.25, 2.0).mean().item()
        l1_sum += (dn["pred_boxes"][image, slot] - targets[image]["boxes"][gt]).abs().sum().item()
    assert losses["loss_mask_cls_0_dn"].item() == pytest.approx(4 * cls_sum / normaliser * slots_per_image, rel=1e-5)
    assert losses["loss_bbox_0_dn"].item() == pytest.approx(5 * l1_sum / normaliser, rel=1e-5)


def test_gradients_reach_every_prediction_tensor():
    outputs = make_outputs(task="seg")
    losses = _criterion()(outputs, make_targets([3, 2], thing_classes=2), "seg", 6)
    sum(losses.values()).backward()
    for tensor in all_prediction_tensors(outputs):
        assert tensor.grad is not None and tensor.grad.abs().sum() > 0
        assert torch.isfinite(tensor.grad).all()


@pytest.mark.parametrize("task", ["seg", "det"])
def test_degenerate_batches_give_finite_losses_and_gradients(task):
    criterion = _criterion()
    # image 0: no GT; image 1: > 100 GT (so no conditioned queries), some with zero-area boxes
    targets = make_targets([0, 120], task=task)
    targets[1]["boxes"][:10, 2:] = 0.0
    targets[1]["boxes"][10:20] = 0.0
    if task == "seg":
        targets[1]["masks"][10:20] = 0.0
    outputs = make_outputs(task=task, dn_groups=None)
    losses = criterion(outputs, targets, task, 6)
    assert all(torch.isfinite(v) for v in losses.values())
    assert all(losses[k].item() == 0 for k in losses if k.endswith("_dn"))
    sum(losses.values()).backward()
    assert all(torch.isfinite(t.grad).all() for t in all_prediction_tensors(outputs) if t.grad is not None)


def test_label_outside_vocabulary_is_rejected():
    targets = make_targets([2, 1], classes=5)
    targets[1]["labels"][0] = 7
    with pytest.raises(ValueError, match=r"label 7 .*K=5"):
        _criterion()(make_outputs(classes=5), targets, "seg", 6)


def test_det_interm_drops_background_queries_unless_quirk_flag():
    for keep, expect_bg_grad in ((False, False), (True, True)):
        outputs = make_outputs(task="det")
        losses = _criterion(det_interm_keep_background=keep)(outputs, make_targets([3, 2], task="det"), "det", 6)
        sum(v for k, v in losses.items() if "interm" in k).backward()
        bg_grad = outputs["interm_outputs"]["pred_logits"].grad[:, 6:]
        assert bool(bg_grad.abs().sum() > 0) is expect_bg_grad


def _distributed_count(rank, world_size, init_file, queue):
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    targets = make_targets([2 + 2 * rank], task="det")  # 2 GT on rank 0, 4 on rank 1
    queue.put((rank, average_num_targets(targets, torch.device("cpu"))))
    torch.distributed.destroy_process_group()


def test_num_masks_is_averaged_across_processes(tmp_path):
    context = mp.get_context("fork")
    queue = context.Queue()
    workers = [context.Process(target=_distributed_count, args=(r, 2, str(tmp_path / "init"), queue)) for r in (0, 1)]
    for worker in workers:
        worker.start()
    results = dict(queue.get(timeout=60) for _ in workers)
    for worker in workers:
        worker.join(timeout=60)
    assert results == {0: 3.0, 1: 3.0}
    assert average_num_targets(make_targets([0, 0], task="det"), torch.device("cpu")) == 1.0
