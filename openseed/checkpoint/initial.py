"""Initial weights of parts of a model: the text encoder (`MODEL.TEXT.INIT_WEIGHTS`) and the backbone
(`MODEL.BACKBONE.INIT_WEIGHTS`).

Building a model loads no weights (Detectron2's rule for `build_model`); whoever builds a model for use calls
`load_model_weights` (inference, in `openseed.checkpoint.adapters`) or the trainer's `load_initial_weights`, which
call the functions here once.

The text-encoder rule (`load_text_encoder_weights`): the file holds the whole text encoder
(`sem_seg_head.predictor.lang_encoder`: the transformer `lang_encoder.*`, `lang_proj`, `logit_scale`), with keys
relative to it or full-model keys (of which only those under `sem_seg_head.predictor.lang_encoder.` are used).
Every tensor must be present with the model's shape, except the positional embedding: when only its length (the
text context length) differs, it is linearly resampled to the model's `MODEL.TEXT.CONTEXT_LENGTH`, as the official
language-encoder loader does (so a 77-position language checkpoint initialises an 18-position model).
"""

from __future__ import annotations

import logging
import os
import re

import torch.nn.functional as F
from torch import Tensor, nn

from .strict import check_state_dict_fits, listed, load_state_strictly, model_state, read_checkpoint

logger = logging.getLogger(__name__)

TEXT_ENCODER_PATH = "sem_seg_head.predictor.lang_encoder"
POSITIONAL_EMBEDDING = "lang_encoder.positional_embedding"  # relative to the text encoder
BACKBONE_PATH = "backbone"
# In an ImageNet classification checkpoint but not in the detection backbone: the classifier, its final norm, and
# the shifted-window attention masks (recomputed by the model for every input size).
CLASSIFICATION_ONLY_KEYS = re.compile(r"^(head\.|norm\.)|\.attn_mask$")
# In the detection backbone but not in a classification checkpoint: the per-level output norms (`norm0`..`norm3`).
DETECTION_ONLY_KEYS = re.compile(r"^norm\d+\.")


def submodule_state(path: str | os.PathLike, submodule: str) -> dict:
    """The tensors of `path` relative to `submodule`: a full-model file contributes only the keys under
    `submodule.` (the others are ignored, logged); a file without such keys is taken as relative already."""
    state = model_state(read_checkpoint(path))
    prefix = submodule + "."
    if not any(key.startswith(prefix) for key in state):
        return state
    relative = {key.removeprefix(prefix): value for key, value in state.items() if key.startswith(prefix)}
    logger.info(f"{path}: using the {len(relative)} tensors under {prefix}, ignoring {len(state) - len(relative)}")
    return relative


def resample_positions(embedding: Tensor, length: int) -> Tensor:
    """A positional embedding L×D linearly resampled to `length`×D (align_corners=False); float32."""
    return F.interpolate(embedding.float().t()[None], size=length, mode="linear")[0].t()


def load_text_encoder_weights(text_encoder: nn.Module, path: str | os.PathLike) -> None:
    """Load `path` into `text_encoder` (a `LanguageEncoder`) by the rule of the module docstring.

    Raises:
        CheckpointMismatchError: a text-encoder tensor is missing, unexpected or of another shape (a positional
            embedding of another width included); the message names the keys and the file.
    """
    state = submodule_state(path, TEXT_ENCODER_PATH)
    own = text_encoder.state_dict()
    positions = state.get(POSITIONAL_EMBEDDING)
    target = own.get(POSITIONAL_EMBEDDING)
    if positions is not None and target is not None and positions.shape[1:] == target.shape[1:] \
            and positions.shape[0] != target.shape[0]:
        logger.info(f"{path}: text positional embedding resampled from {positions.shape[0]} to {target.shape[0]} "
                    "positions (MODEL.TEXT.CONTEXT_LENGTH)")
        state[POSITIONAL_EMBEDDING] = resample_positions(positions, target.shape[0]).to(target.dtype)
    load_state_strictly(text_encoder, state, f"{path} (MODEL.TEXT.INIT_WEIGHTS)")
    logger.info(f"Loaded the text encoder from {path}")


def load_backbone_weights(model: nn.Module, path: str | os.PathLike) -> None:
    """Initialise `model.backbone` from an ImageNet classification checkpoint (MODEL.BACKBONE.INIT_WEIGHTS).

    The file is the official Swin release (`{"model": state_dict}`, e.g. swin_tiny_patch4_window7_224.pth) or any
    state dict with the backbone's keys, bare or under `backbone.`. Classification-only keys (`CLASSIFICATION_ONLY_KEYS`)
    are dropped and the detection-only output norms keep their initialisation, both logged; every other backbone
    tensor must be present with its shape (else `CheckpointMismatchError`, e.g. a window size that differs).
    """
    backbone = model.get_submodule(BACKBONE_PATH)
    state = submodule_state(path, BACKBONE_PATH)
    dropped = sorted(key for key in state if CLASSIFICATION_ONLY_KEYS.search(key))
    state = {key: value for key, value in state.items() if key not in dropped}
    own = backbone.state_dict()
    kept = {key: value for key, value in own.items() if key not in state and DETECTION_ONLY_KEYS.match(key)}
    check_state_dict_fits(own, {**kept, **state}, f"{path} (MODEL.BACKBONE.INIT_WEIGHTS)")
    backbone.load_state_dict({**kept, **state}, strict=True)
    logger.info(f"Loaded the backbone from {path}: {len(state)} tensors; dropped {len(dropped)} classification-only "
                f"({listed(dropped)}); newly initialised: {listed(sorted(kept)) or 'none'}")


def initialise_text_encoder(model: nn.Module, cfg) -> None:
    """`MODEL.TEXT.INIT_WEIGHTS` (when set) into the text encoder of `model` (an OpenSeeD)."""
    if cfg.MODEL.TEXT.INIT_WEIGHTS:
        load_text_encoder_weights(model.get_submodule(TEXT_ENCODER_PATH), cfg.MODEL.TEXT.INIT_WEIGHTS)


def initialise_backbone(model: nn.Module, cfg) -> None:
    """`MODEL.BACKBONE.INIT_WEIGHTS` (when set) into the backbone of `model`."""
    if cfg.MODEL.BACKBONE.INIT_WEIGHTS:
        load_backbone_weights(model, cfg.MODEL.BACKBONE.INIT_WEIGHTS)
