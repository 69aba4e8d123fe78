"""Set criterion: matching-based and conditioned-query losses of one batch, already weighted (docs/official_behaviours.md §7.3–7.5).

Prediction sets and their key suffixes (i = layer id):
    "_0" = last decoder layer, "_1".."_L" = `aux_outputs` (initial prediction, then layers 1..L-1),
    "_0_interm" = encoder proposals, "_{i}_dn" = conditioned/denoising queries of set i (no matching).
Terms per set: `loss_mask_cls` (sigmoid focal), `loss_bbox` (L1), `loss_giou` (1 - GIoU), and for `seg`
`loss_mask_bce` / `loss_mask_dice` (point-sampled). With the O365 mask assistance loss on (det only),
`loss_assist_bce` / `loss_assist_dice` are added for every matching set.

The key set depends only on the task and the number of prediction sets: with 9 decoder layers (10 sets) `seg` has
5·10 + 5 + 5·10 = 105 keys and `det` 3·10 + 3 + 3·10 = 63 (+ 2·11 assist keys when the assist loss is on). Absent
terms (no GT, no conditioned queries this batch) are zeros connected to the prediction tensors.
"""

from __future__ import annotations

import torch
from detectron2.config import configurable
from torch import nn

from openseed.losses.loss_terms import box_giou_sum, box_l1_sum, point_sampled_mask_sums, sigmoid_focal_loss
from openseed.losses.mask_assist import MaskAssistSettings, build_pseudo_targets
from openseed.losses.matcher import HungarianMatcher, MatchIndices
from openseed.structures import TRAIN_TASKS
from openseed.utils.random_draws import TrainingDraws

TERMS = ("mask_cls", "mask_bce", "mask_dice", "bbox", "giou")
MASK_TERMS = ("mask_bce", "mask_dice")
ASSIST_TERMS = ("assist_bce", "assist_dice")


def average_num_targets(targets: list[dict], device: torch.device) -> float:
    """Number of GT objects in the batch, averaged over processes when torch.distributed runs, at least 1."""
    count = torch.as_tensor([float(sum(len(t["labels"]) for t in targets))], device=device)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(count)
        count = count / torch.distributed.get_world_size()
    return max(float(count.item()), 1.0)


def _flat_index(indices: MatchIndices, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(image ids, query ids) of all matched pairs, image by image: two (M,) int64 tensors."""
    images = torch.cat([torch.full_like(q, b) for b, (q, _) in enumerate(indices)]).to(device)
    queries = torch.cat([q for q, _ in indices]).to(device)
    return images, queries


class SetCriterion(nn.Module):
    """Losses of one dataset batch (`seg`: labels, boxes, masks; `det`: labels, boxes), returned weighted.

    The attribute `iteration` (int, default 0) is the current training iteration; the trainer sets it before each
    step. It only matters for the ramp of the O365 mask-assistance loss.
    """

    @configurable
    def __init__(
        self,
        *,
        matcher: HungarianMatcher,
        weights: dict[str, float],
        num_points: int,
        oversample_ratio: float,
        importance_sample_ratio: float,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        deep_supervision: bool = True,
        dn_enabled: bool = True,
        det_interm_keep_background: bool = False,
        mask_assist: MaskAssistSettings | None = None,
        assist_matcher: HungarianMatcher | None = None,
    ):
        """
        Args:
            matcher: Hungarian matcher for every matching prediction set.
            weights: weight of each term in `TERMS` ("mask_cls", "mask_bce", "mask_dice", "bbox", "giou").
            num_points, oversample_ratio, importance_sample_ratio: importance point sampling of the mask losses.
            focal_alpha, focal_gamma: sigmoid focal class loss parameters.
            deep_supervision: also supervise `aux_outputs` (and their conditioned queries).
            dn_enabled: the decoder has conditioned/denoising queries (DN != "no"): emit "_dn" keys.
            det_interm_keep_background: reference quirk — match `det` targets to the background queries of the
                interm output too; by default the interm output of `det` is cut to the foreground queries.
            mask_assist: O365 mask-assistance settings, None when disabled.
            assist_matcher: matcher with the assistance mask-cost weights (required with `mask_assist`).
        """
        super().__init__()
        missing = set(TERMS) - set(weights)
        if missing:
            raise ValueError(f"SetCriterion weights lack {sorted(missing)}")
        if mask_assist is not None and assist_matcher is None:
            raise ValueError("mask assistance needs an assist_matcher with its mask-cost weights")
        self.matcher = matcher
        self.weights = dict(weights)
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.deep_supervision = deep_supervision
        self.dn_enabled = dn_enabled
        self.det_interm_keep_background = det_interm_keep_background
        self.mask_assist = mask_assist
        self.assist_matcher = assist_matcher
        self.iteration = 0

    @classmethod
    def from_config(cls, cfg) -> dict:
        dec = cfg.MODEL.DECODER
        mask_assist = MaskAssistSettings.from_config(cfg) if dec.O365_MASK_ASSIST else None
        assist_matcher = None
        if mask_assist is not None:
            assist_matcher = HungarianMatcher(
                cfg, cost_mask=mask_assist.cost_mask, cost_dice=mask_assist.cost_dice
            )
        return {
            "matcher": HungarianMatcher(cfg),
            "weights": {
                "mask_cls": dec.CLASS_WEIGHT,
                "mask_bce": dec.MASK_WEIGHT,
                "mask_dice": dec.DICE_WEIGHT,
                "bbox": dec.BOX_WEIGHT,
                "giou": dec.GIOU_WEIGHT,
            },
            "num_points": dec.TRAIN_NUM_POINTS,
            "oversample_ratio": dec.OVERSAMPLE_RATIO,
            "importance_sample_ratio": dec.IMPORTANCE_SAMPLE_RATIO,
            "focal_alpha": dec.FOCAL_ALPHA,
            "focal_gamma": dec.FOCAL_GAMMA,
            "deep_supervision": dec.DEEP_SUPERVISION,
            "dn_enabled": dec.DN != "no",
            "det_interm_keep_background": dec.DET_INTERM_KEEP_BACKGROUND,
            "mask_assist": mask_assist,
            "assist_matcher": assist_matcher,
        }

    def forward(self, outputs: dict, targets: list[dict], task: str, num_foreground: int,
                draws: TrainingDraws | None = None) -> dict[str, torch.Tensor]:
        """Weighted losses of one batch.

        Args:
            outputs: the decoder outputs (docs/architecture.md): "pred_logits" (B, Q, K), "pred_boxes" (B, Q, 4),
                "pred_masks" (B, Q, h, w) for `seg` (and for `det` with mask assistance), "aux_outputs" (list of
                dicts with the same keys), "interm_outputs" (dict, optional), "dn_outputs" (same structure incl.
                "aux_outputs", or None) with "dn_meta" {"num_groups": s, "group_size": G}, and for `det` with
                mask assistance "mask_assist" {"pred_masks": (B, G', h, w), "valid": (B, G')} or None.
            targets: B dicts: "labels" (N,) int64 in [0, K), "boxes" (N, 4) normalised (cx, cy, w, h),
                "masks" (N, Hpad, Wpad) float (`seg`), "is_thing" (N,) bool (`seg` with background queries).
            task: "seg" or "det".
            num_foreground: queries [0, num_foreground) are foreground, the rest background.
            draws: source of the point-sampling draws, keys "match_points/{set}" and "mask_points/{set}" with {set}
                the key suffix without its leading "_" (default: fresh draws).
        Returns:
            {key: weighted scalar loss}, keys as in the module docstring.
        """
        if task not in TRAIN_TASKS:
            raise ValueError(f"unknown task {task!r}; expected one of {TRAIN_TASKS}")
        self._check_targets(outputs, targets, task)
        draws = draws or TrainingDraws()
        num_masks = average_num_targets(targets, outputs["pred_logits"].device)
        assist_targets = None
        if task == "det" and self.mask_assist is not None:
            assist_targets = build_pseudo_targets(
                outputs.get("mask_assist"), targets, self.mask_assist.threshold, self.mask_assist.clip_to_box
            )

        layer_sets = [outputs] + (list(outputs["aux_outputs"]) if self.deep_supervision else [])
        losses = {}
        for layer, prediction in enumerate(layer_sets):
            losses.update(
                self._matching_losses(prediction, targets, task, num_foreground, num_masks, assist_targets, f"_{layer}",
                                      draws)
            )
        if "interm_outputs" in outputs:
            interm = outputs["interm_outputs"]
            if task == "det" and not self.det_interm_keep_background:
                interm = {k: v[:, :num_foreground] for k, v in interm.items() if torch.is_tensor(v)}
            losses.update(
                self._matching_losses(interm, targets, task, num_foreground, num_masks, assist_targets, "_0_interm",
                                      draws)
            )
        if self.dn_enabled:
            dn_outputs = outputs.get("dn_outputs")
            dn_sets = None
            if dn_outputs is not None:
                dn_sets = [dn_outputs] + (list(dn_outputs["aux_outputs"]) if self.deep_supervision else [])
                if len(dn_sets) != len(layer_sets):
                    raise ValueError(f"dn_outputs has {len(dn_sets)} prediction sets, the outputs {len(layer_sets)}")
            for layer, prediction in enumerate(layer_sets):
                suffix = f"_{layer}_dn"
                if dn_sets is None:
                    losses.update(self._zero_losses(prediction, task, suffix))
                else:
                    losses.update(self._dn_losses(dn_sets[layer], outputs["dn_meta"], targets, task, num_masks, suffix,
                                                  draws))
        return losses

    def _check_targets(self, outputs: dict, targets: list[dict], task: str) -> None:
        num_images, _, num_classes = outputs["pred_logits"].shape
        if len(targets) != num_images:
            raise ValueError(f"{len(targets)} targets for a batch of {num_images} images")
        for image, target in enumerate(targets):
            labels = target["labels"]
            if labels.numel() and (int(labels.max()) >= num_classes or int(labels.min()) < 0):
                bad = int(labels.max()) if int(labels.max()) >= num_classes else int(labels.min())
                raise ValueError(
                    f"target label {bad} of image {image} is outside the batch vocabulary of K={num_classes} classes"
                )
            if target["boxes"].shape != (len(labels), 4):
                raise ValueError(f"image {image}: boxes of shape {tuple(target['boxes'].shape)} for {len(labels)} labels")
            if task == "seg" and ("masks" not in target or len(target["masks"]) != len(labels)):
                raise ValueError(f"image {image}: a seg target needs one mask per label")
            if task == "seg" and ("is_thing" not in target or len(target["is_thing"]) != len(labels)):
                raise ValueError(f"image {image}: a seg target needs one is_thing flag per label")

    def _weighted(self, terms: dict[str, torch.Tensor], suffix: str, scale: float = 1.0) -> dict[str, torch.Tensor]:
        """{term: value} -> {f"loss_{term}{suffix}": weight · value}; assist terms use the mask/dice weights."""
        weight_of = {"assist_bce": "mask_bce", "assist_dice": "mask_dice"}
        return {
            f"loss_{term}{suffix}": value * (self.weights[weight_of.get(term, term)] * scale)
            for term, value in terms.items()
        }

    def _zero_losses(self, prediction: dict, task: str, suffix: str) -> dict[str, torch.Tensor]:
        """Zeros connected to the prediction tensors, for terms absent from this batch."""
        zero_cls = prediction["pred_logits"].sum() * 0.0
        zero_box = prediction["pred_boxes"].sum() * 0.0
        terms = {"mask_cls": zero_cls, "bbox": zero_box, "giou": zero_box}
        if task == "seg":
            zero_mask = prediction["pred_masks"].sum() * 0.0
            terms.update({term: zero_mask for term in MASK_TERMS})
        return self._weighted(terms, suffix)

    def _box_terms(self, pred_boxes: torch.Tensor, target_boxes: torch.Tensor, normaliser: float) -> dict:
        return {
            "bbox": box_l1_sum(pred_boxes, target_boxes) / normaliser,
            "giou": box_giou_sum(pred_boxes, target_boxes) / normaliser,
        }

    def _mask_terms(
        self, pred_masks: torch.Tensor, mask_targets: list[torch.Tensor], target_ids: list[torch.Tensor],
        normaliser: float, draws: TrainingDraws, suffix: str,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        bce, dice = point_sampled_mask_sums(
            pred_masks, mask_targets, target_ids, self.num_points, self.oversample_ratio, self.importance_sample_ratio,
            draws, f"mask_points/{suffix[1:]}",
        )
        return bce / normaliser, dice / normaliser

    def _matching_losses(
        self,
        prediction: dict,
        targets: list[dict],
        task: str,
        num_foreground: int,
        num_masks: float,
        assist_targets: list[dict] | None,
        suffix: str,
        draws: TrainingDraws,
    ) -> dict[str, torch.Tensor]:
        """Match one prediction set and compute its class, box (and mask / assist) losses."""
        logits = prediction["pred_logits"]
        match_key = f"match_points/{suffix[1:]}"
        if task == "seg":
            indices = self.matcher(prediction, targets, use_masks=True, num_foreground=num_foreground, draws=draws,
                                   key=match_key)
        elif assist_targets is not None:
            if "pred_masks" not in prediction:
                raise ValueError(f"O365 mask assistance needs 'pred_masks' in every det prediction set (set {suffix})")
            indices = self.assist_matcher(prediction, assist_targets, use_masks=True, num_foreground=None,
                                          draws=draws, key=match_key)
        else:
            indices = self.matcher(prediction, targets, use_masks=False, num_foreground=None, draws=draws,
                                   key=match_key)

        images, queries = _flat_index(indices, logits.device)
        labels = torch.cat([t["labels"][j.to(t["labels"].device)] for t, (_, j) in zip(targets, indices)])
        one_hot = torch.zeros_like(logits, dtype=torch.float32)
        one_hot[images, queries, labels.to(logits.device)] = 1.0
        terms = {
            "mask_cls": sigmoid_focal_loss(logits, one_hot, self.focal_alpha, self.focal_gamma).sum() / num_masks
        }
        target_boxes = torch.cat([t["boxes"][j.to(t["boxes"].device)] for t, (_, j) in zip(targets, indices)])
        terms.update(self._box_terms(prediction["pred_boxes"][images, queries], target_boxes, num_masks))
        if task == "seg":
            terms["mask_bce"], terms["mask_dice"] = self._mask_terms(
                prediction["pred_masks"][images, queries], [t["masks"] for t in targets],
                [j for _, j in indices], num_masks, draws, suffix,
            )
        losses = self._weighted(terms, suffix)
        if assist_targets is not None and self.mask_assist.loss_weight > 0:
            losses.update(self._assist_losses(prediction, assist_targets, indices, num_masks, suffix, draws))
        return losses

    def _assist_losses(
        self, prediction: dict, assist_targets: list[dict], indices: MatchIndices, num_masks: float, suffix: str,
        draws: TrainingDraws,
    ) -> dict[str, torch.Tensor]:
        """Pseudo-mask loss on matched foreground queries whose GT has a valid pseudo-mask."""
        kept = []
        for target, (q, j) in zip(assist_targets, indices):
            valid = target["mask_valid"].cpu()[j]
            kept.append((q[valid], j[valid]))
        images, queries = _flat_index(kept, prediction["pred_logits"].device)
        bce, dice = self._mask_terms(
            prediction["pred_masks"][images, queries], [t["masks"] for t in assist_targets],
            [j for _, j in kept], num_masks, draws, f"{suffix}_assist",
        )
        scale = self.mask_assist.loss_scale(self.iteration)
        return self._weighted({"assist_bce": bce, "assist_dice": dice}, suffix, scale)

    def _dn_losses(
        self, prediction: dict, dn_meta: dict, targets: list[dict], task: str, num_masks: float, suffix: str,
        draws: TrainingDraws,
    ) -> dict[str, torch.Tensor]:
        """Conditioned-query losses without matching (docs/official_behaviours.md §7.5): slot g·G + j of image i ↔ GT j of image i.

        The normaliser is num_masks · s (s groups of G slots, P = s·G queries per image). The class loss is the focal
        loss of the paired slots only, averaged over the K classes, summed, normalised, then multiplied by P —
        the reference normalisation, reproduced as is.
        """
        num_groups, group_size = int(dn_meta["num_groups"]), int(dn_meta["group_size"])
        logits = prediction["pred_logits"]
        num_slots = logits.shape[1]
        if num_slots != num_groups * group_size:
            raise ValueError(f"dn outputs have {num_slots} queries, dn_meta says {num_groups}×{group_size}")
        indices = []
        for image, target in enumerate(targets):
            count = len(target["labels"])
            if count > group_size:
                raise ValueError(f"image {image} has {count} targets but DN groups hold {group_size}")
            gt = torch.arange(count).repeat(num_groups)
            slots = (torch.arange(num_groups)[:, None] * group_size + torch.arange(count)[None, :]).flatten()
            indices.append((slots, gt))
        normaliser = num_masks * num_groups
        images, slots = _flat_index(indices, logits.device)
        labels = torch.cat([t["labels"][j.to(t["labels"].device)] for t, (_, j) in zip(targets, indices)])
        paired_logits = logits[images, slots]
        one_hot = torch.zeros_like(paired_logits, dtype=torch.float32)
        one_hot[torch.arange(len(labels), device=logits.device), labels.to(logits.device)] = 1.0
        focal = sigmoid_focal_loss(paired_logits, one_hot, self.focal_alpha, self.focal_gamma)
        terms = {"mask_cls": focal.mean(1).sum() / normaliser * num_slots}
        target_boxes = torch.cat([t["boxes"][j.to(t["boxes"].device)] for t, (_, j) in zip(targets, indices)])
        terms.update(self._box_terms(prediction["pred_boxes"][images, slots], target_boxes, normaliser))
        if task == "seg":
            terms["mask_bce"], terms["mask_dice"] = self._mask_terms(
                prediction["pred_masks"][images, slots], [t["masks"] for t in targets],
                [j for _, j in indices], normaliser, draws, suffix,
            )
        return self._weighted(terms, suffix)
