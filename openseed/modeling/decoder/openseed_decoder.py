"""The OpenSeeD predictor (`sem_seg_head.predictor`): query selection, conditioned queries, decoding, heads.

Official attribute names are kept so official checkpoints load 1:1 (docs/official_behaviours.md §5.1, §12.3): `lang_encoder`,
`lang_mapper` (D×C), `class_embed` (C×D), `query_feat`/`query_embed` (decoupled only), `enc_output`,
`enc_output_norm`, `mask_embed`, `decoder_norm` (= `decoder.norm`), `decoder`, and the one box MLP `_bbox_embed`,
also registered as every entry of `bbox_embed` and `decoder.bbox_embed`.

Query layout into the decoder: [conditioned (DN groups, then the mask-assistance or prompt group) ; foreground
(top-k tokens) ; background (decoupled)]. The output dict is `openseed.structures.DecoderOutputs`.
"""

from __future__ import annotations

import torch
from detectron2.config import configurable
from timm.layers import trunc_normal_
from torch import Tensor, nn

from openseed.modeling.decoder.conditioned_queries import (
    BoxPrompts,
    ConditionedQueries,
    attention_mask,
    build_prompt_queries,
    build_training_queries,
)
from openseed.modeling.decoder.deformable_decoder import MLP, DeformableTransformerDecoder, inverse_sigmoid
from openseed.modeling.decoder.query_selection import (
    SelectedQueries,
    background_queries,
    best_class_logits,
    encoder_proposals,
    flatten_memory,
    select_top_tokens,
)
from openseed.structures import TRAIN_TASKS, DecoderOutputs, PredictionSet
from openseed.utils.random_draws import TrainingDraws


class OpenSeeDDecoder(nn.Module):
    """Decoupled (300 fg + 100 bg queries) or plain (300 queries) OpenSeeD transformer decoder."""

    @configurable
    def __init__(
        self,
        *,
        lang_encoder: nn.Module,
        in_channels: int,
        hidden_dim: int,
        dim_proj: int,
        mask_dim: int,
        num_queries: int,
        num_queries_test: int,
        num_background_queries: int,
        nheads: int,
        dim_feedforward: int,
        dropout: float,
        dec_layers: int,
        dec_n_points: int,
        num_feature_levels: int,
        dn: str,
        dn_num: int,
        dn_noise_scale: float,
        initial_pred: bool,
        detach_background_queries: bool,
        o365_mask_assist: bool,
    ):
        super().__init__()
        if in_channels != hidden_dim:
            raise ValueError(f"decoder input channels ({in_channels}, MODEL.ENCODER.CONVS_DIM) must equal "
                             f"MODEL.DECODER.HIDDEN_DIM ({hidden_dim}); input projections are not supported")
        if dn not in ("seg", "standard", "no"):
            raise ValueError(f"MODEL.DECODER.DN must be 'seg', 'standard' or 'no', got {dn!r}")
        self.hidden_dim = hidden_dim
        self.num_queries = num_queries
        self.num_queries_test = num_queries_test
        self.num_background_queries = num_background_queries
        self.num_feature_levels = num_feature_levels
        self.num_layers = dec_layers
        self.dn = dn
        self.dn_num = dn_num if dn != "no" else 0
        self.dn_noise_scale = dn_noise_scale
        self.initial_pred = initial_pred
        self.detach_background_queries = detach_background_queries
        self.o365_mask_assist = o365_mask_assist

        if num_background_queries > 0:
            self.query_feat = nn.Embedding(num_background_queries, hidden_dim)
            self.query_embed = nn.Embedding(num_background_queries, 4)
        self.enc_output = nn.Linear(hidden_dim, hidden_dim)
        self.enc_output_norm = nn.LayerNorm(hidden_dim)
        self.lang_encoder = lang_encoder
        self.lang_mapper = nn.Parameter(torch.empty(dim_proj, hidden_dim))
        trunc_normal_(self.lang_mapper, std=0.02)
        self.class_embed = nn.Parameter(torch.empty(hidden_dim, dim_proj))
        trunc_normal_(self.class_embed, std=0.02)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.decoder = DeformableTransformerDecoder(
            num_layers=dec_layers, d_model=hidden_dim, d_ffn=dim_feedforward, dropout=dropout,
            n_levels=num_feature_levels, n_heads=nheads, n_points=dec_n_points, norm=self.decoder_norm,
        )
        self._bbox_embed = MLP(hidden_dim, hidden_dim, 4, 3)
        nn.init.constant_(self._bbox_embed.layers[-1].weight, 0.0)
        nn.init.constant_(self._bbox_embed.layers[-1].bias, 0.0)
        self.bbox_embed = nn.ModuleList([self._bbox_embed] * dec_layers)
        self.decoder.bbox_embed = self.bbox_embed

    @classmethod
    def from_config(cls, cfg, in_channels: int, lang_encoder: nn.Module):
        dec = cfg.MODEL.DECODER
        decoupled = dec.DECOUPLED
        return {
            "lang_encoder": lang_encoder,
            "in_channels": in_channels,
            "hidden_dim": dec.HIDDEN_DIM,
            "dim_proj": cfg.MODEL.DIM_PROJ,
            "mask_dim": cfg.MODEL.ENCODER.MASK_DIM,
            "num_queries": dec.NUM_OBJECT_QUERIES,
            "num_queries_test": dec.NUM_OBJECT_QUERIES_TEST if decoupled else dec.NUM_OBJECT_QUERIES,
            "num_background_queries": dec.NUM_BACKGROUND_QUERIES if decoupled else 0,
            "nheads": dec.NHEADS,
            "dim_feedforward": dec.DIM_FEEDFORWARD,
            "dropout": dec.DROPOUT,
            "dec_layers": dec.DEC_LAYERS,
            "dec_n_points": dec.DEC_N_POINTS,
            "num_feature_levels": cfg.MODEL.ENCODER.TOTAL_NUM_FEATURE_LEVELS,
            "dn": dec.DN,
            "dn_num": dec.DN_NUM,
            "dn_noise_scale": dec.DN_NOISE_SCALE,
            "initial_pred": dec.INITIAL_PRED,
            "detach_background_queries": dec.DETACH_BACKGROUND_QUERIES,
            "o365_mask_assist": dec.O365_MASK_ASSIST,
        }

    def prediction_heads(self, queries: Tensor, mask_features: Tensor, text_embeddings: Tensor,
                         with_masks: bool) -> tuple[Tensor, Tensor | None]:
        """queries B×Q×C -> (class logits B×Q×K, mask logits B×Q×h×w or None); `decoder_norm` applied first."""
        normed = self.decoder_norm(queries)
        logits = self.lang_encoder.similarity(normed @ self.class_embed, text_embeddings)
        if not with_masks:
            return logits, None
        return logits, torch.einsum("bqc,bchw->bqhw", self.mask_embed(normed), mask_features)

    def _matching_queries(self, memory: Tensor, spatial_shapes: list[tuple[int, int]], text_embeddings: Tensor,
                          num_foreground: int) -> tuple[SelectedQueries, int]:
        """Foreground (top-k encoder tokens) + background queries, un-detached; returns (queries, number of bg)."""
        masked_memory, proposals, valid = encoder_proposals(memory, spatial_shapes)
        tokens = self.enc_output_norm(self.enc_output(masked_memory))
        token_scores = best_class_logits(tokens, self.class_embed, text_embeddings, self.lang_encoder.similarity)
        token_boxes = self._bbox_embed(tokens) + proposals
        selected = select_top_tokens(tokens, token_boxes, token_scores, valid, num_foreground)
        if self.num_background_queries == 0:
            return selected, 0
        background = background_queries(self.query_feat.weight, self.query_embed.weight, memory.shape[0])
        return SelectedQueries(torch.cat((selected.content, background.content), dim=1),
                               torch.cat((selected.boxes_unsigmoid, background.boxes_unsigmoid), dim=1)), \
            self.num_background_queries

    def _decoder_input(self, matching: SelectedQueries, num_foreground: int) -> tuple[Tensor, Tensor]:
        """Detached content and boxes (background ones only if `detach_background_queries`)."""
        if self.detach_background_queries:
            return matching.content.detach(), matching.boxes_unsigmoid.detach()
        split = [num_foreground, matching.content.shape[1] - num_foreground]
        content_fg, content_bg = matching.content.split(split, dim=1)
        boxes_fg, boxes_bg = matching.boxes_unsigmoid.split(split, dim=1)
        return (torch.cat((content_fg.detach(), content_bg), dim=1),
                torch.cat((boxes_fg.detach(), boxes_bg), dim=1))

    def _conditioned(self, targets, text_embeddings: Tensor, task: str, box_prompts: BoxPrompts | None,
                     draws: TrainingDraws | None) -> tuple[ConditionedQueries | None, int]:
        """The conditioned block and the number of its queries that are denoising queries."""
        if box_prompts is not None:
            if self.training:
                raise ValueError("box prompts are an inference feature; call the model in eval mode")
            return build_prompt_queries(box_prompts, self.lang_mapper), 0
        if not self.training:
            return None, 0
        if targets is None:
            raise ValueError("training forward needs targets (denoising queries and losses)")
        clean_group = self.o365_mask_assist and task == "det"
        block = build_training_queries(targets, text_embeddings, self.lang_mapper, dn_num=self.dn_num,
                                       noise_scale=self.dn_noise_scale, extra_clean_group=clean_group,
                                       draws=draws)
        if block is None:
            return None, 0
        return block, block.num_queries - (block.group_size if clean_group else 0)

    def forward(
        self,
        multi_scale_features: list[Tensor],
        mask_features: Tensor,
        text_embeddings: Tensor,
        targets: list[dict[str, Tensor]] | None = None,
        task: str = "seg",
        box_prompts: BoxPrompts | None = None,
        draws: TrainingDraws | None = None,
    ) -> DecoderOutputs:
        """Decode one batch.

        Args:
            multi_scale_features: L maps B×C×H_l×W_l, high -> low resolution.
            mask_features: B×mask_dim×h×w (stride 4).
            text_embeddings: K×D normalised embeddings of the vocabulary.
            targets: per image {"labels", "boxes" (normalised cx,cy,w,h), ...}; required in training.
            task: "seg" (masks) or "det" (no masks; background queries dropped from the decoder layers' outputs but
                kept in "interm_outputs"). With O365 mask assistance, `det` training computes masks too (the
                criterion matches against pseudo-masks).
            box_prompts: inference only: one noise-free conditioned query per box.
            draws: training only: source of the denoising box noise (default: fresh draws).

        Returns:
            `openseed.structures.DecoderOutputs` (keys and shapes documented there): the last layer's predictions
            ("pred_masks" for seg), "aux_outputs", "interm_outputs", "dn_outputs"/"dn_meta", "num_foreground"; plus
            "mask_assist" for det training with O365 mask assistance, "prompt_outputs" when `box_prompts` is given.
        """
        if task not in TRAIN_TASKS:
            raise ValueError(f"decoder task must be one of {TRAIN_TASKS}, got {task!r}")
        if len(multi_scale_features) != self.num_feature_levels:
            raise ValueError(f"expected {self.num_feature_levels} feature levels, got {len(multi_scale_features)}")
        mask_assist = self.training and task == "det" and self.o365_mask_assist
        with_masks = task == "seg" or mask_assist
        num_foreground = self.num_queries if self.training else self.num_queries_test
        memory, spatial_shapes, level_start_index = flatten_memory(multi_scale_features)

        matching, num_background = self._matching_queries(memory, spatial_shapes, text_embeddings, num_foreground)
        interm_logits, interm_masks = self.prediction_heads(matching.content, mask_features, text_embeddings,
                                                            with_masks and self.training)
        interm = _prediction_set(interm_logits, matching.boxes_unsigmoid.sigmoid(), interm_masks)

        content, boxes_unsigmoid = self._decoder_input(matching, num_foreground)
        conditioned, num_dn = self._conditioned(targets, text_embeddings, task, box_prompts, draws)
        self_attn_mask = None
        num_conditioned = 0
        if conditioned is not None:
            num_conditioned = conditioned.num_queries
            content = torch.cat((conditioned.content, content), dim=1)
            boxes_unsigmoid = torch.cat((conditioned.boxes_unsigmoid, boxes_unsigmoid), dim=1)
            self_attn_mask = attention_mask(conditioned.num_groups, conditioned.group_size,
                                            matching.content.shape[1], content.device)

        hidden, references = self.decoder(content, memory, boxes_unsigmoid, spatial_shapes, level_start_index,
                                          self_attn_mask)
        keep = content.shape[1] - (num_background if task == "det" else 0)
        hidden = [h[:, :keep] for h in hidden]
        references = [r[:, :keep] for r in references]

        sets = []
        if self.initial_pred:
            logits, masks = self.prediction_heads(content[:, :keep], mask_features, text_embeddings,
                                                  with_masks and self.training)
            sets.append(_prediction_set(logits, references[0], masks))
        for j, (output, reference) in enumerate(zip(hidden, references[:-1])):
            boxes = (self._bbox_embed(output) + inverse_sigmoid(reference)).sigmoid()
            last = j == len(hidden) - 1
            logits, masks = self.prediction_heads(output, mask_features, text_embeddings,
                                                  with_masks and (self.training or last))
            sets.append(_prediction_set(logits, boxes, masks))

        outputs = _outputs_from_sets([_slice_set(s, num_conditioned, None) for s in sets])
        outputs["interm_outputs"] = interm
        outputs["num_foreground"] = num_foreground
        outputs["dn_outputs"], outputs["dn_meta"] = None, None
        if num_dn > 0:
            outputs["dn_outputs"] = _outputs_from_sets([_slice_set(s, 0, num_dn) for s in sets])
            outputs["dn_meta"] = {"num_groups": num_dn // conditioned.group_size, "group_size": conditioned.group_size}
        if conditioned is not None and num_conditioned > num_dn:
            group = _slice_set(sets[-1], num_dn, num_conditioned)
            if "pred_masks" not in group:
                _, group["pred_masks"] = self.prediction_heads(hidden[-1][:, num_dn:num_conditioned], mask_features,
                                                               text_embeddings, True)
            group["valid"] = conditioned.valid[:, num_dn:]
            if box_prompts is not None:
                outputs["prompt_outputs"] = group
            else:
                outputs["mask_assist"] = {"pred_masks": group["pred_masks"], "valid": group["valid"]}
        return outputs


def _prediction_set(logits: Tensor, boxes: Tensor, masks: Tensor | None) -> PredictionSet:
    out: PredictionSet = {"pred_logits": logits, "pred_boxes": boxes}
    if masks is not None:
        out["pred_masks"] = masks
    return out


def _slice_set(prediction: PredictionSet, start: int, stop: int | None) -> PredictionSet:
    return {key: value[:, start:stop] for key, value in prediction.items()}


def _outputs_from_sets(sets: list[PredictionSet]) -> DecoderOutputs:
    """Last set at the top level, the others (in order) as `aux_outputs`."""
    outputs = DecoderOutputs(**sets[-1])
    outputs["aux_outputs"] = sets[:-1]
    return outputs
