"""Strict loading of a whole model: every key present, no extra key, equal shapes, or an error naming them.

A model checkpoint is `{"model": state_dict, ...}` (a training checkpoint, see `openseed.engine.checkpointer`) or a
plain state dict; keys may carry DistributedDataParallel's `module.` prefix. There are no silent partial loads:
official files are converted first (`openseed.checkpoint.convert`, tools/convert_official_checkpoint.py), and the
two partial initialisations are explicit (`openseed.checkpoint.initial`).
"""

from __future__ import annotations

import logging
import os

from torch import nn

from .io import load_checkpoint

logger = logging.getLogger(__name__)

_MAX_LISTED = 20


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the model: missing, unexpected or differently shaped parameters."""


def listed(names: list[str]) -> str:
    """The first names, comma-separated, and how many more there are."""
    shown = ", ".join(names[:_MAX_LISTED])
    return shown + (f", ... ({len(names) - _MAX_LISTED} more)" if len(names) > _MAX_LISTED else "")


def check_state_dict_fits(model_state: dict, checkpoint_state: dict, source: str) -> None:
    """Raise `CheckpointMismatchError` naming every missing, unexpected and shape-mismatched key."""
    missing = [k for k in model_state if k not in checkpoint_state]
    unexpected = [k for k in checkpoint_state if k not in model_state]
    shapes = [
        f"{k} (checkpoint {tuple(checkpoint_state[k].shape)}, model {tuple(model_state[k].shape)})"
        for k in model_state
        if k in checkpoint_state and tuple(checkpoint_state[k].shape) != tuple(model_state[k].shape)
    ]
    problems = []
    if shapes:
        problems.append(f"{len(shapes)} parameter(s) with a different shape: {listed(shapes)}")
    if missing:
        problems.append(f"{len(missing)} model parameter(s) missing from the checkpoint: {listed(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} checkpoint parameter(s) the model does not have: {listed(unexpected)}")
    if problems:
        raise CheckpointMismatchError(
            f"checkpoint {source} does not match the model architecture:\n  " + "\n  ".join(problems)
            + "\n(official checkpoints must first be converted with tools/convert_official_checkpoint.py; an ImageNet "
            "backbone checkpoint goes to MODEL.BACKBONE.INIT_WEIGHTS, a text-encoder one to MODEL.TEXT.INIT_WEIGHTS)"
        )


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load `path` with `weights_only=True`; a plain state dict comes back as `{"model": state_dict}`."""
    loaded = load_checkpoint(path)
    return loaded if isinstance(loaded.get("model"), dict) else {"model": loaded}


def model_state(checkpoint: dict) -> dict:
    """The model state dict of a checkpoint read by `read_checkpoint`, without DDP's `module.` prefix."""
    return {k.removeprefix("module."): v for k, v in checkpoint["model"].items()}


def load_state_strictly(model: nn.Module, state: dict, source: str) -> None:
    """Load `state` into `model` after `check_state_dict_fits` (the error names `source`)."""
    check_state_dict_fits(model.state_dict(), state, source)
    model.load_state_dict(state, strict=True)


def load_model_file(model: nn.Module, path: str | os.PathLike) -> None:
    """Load the model entry of checkpoint `path` into `model`, strictly (other entries are ignored)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file {path!r} does not exist")
    logger.info(f"Loading model weights from {path}")
    load_state_strictly(model, model_state(read_checkpoint(path)), path)
