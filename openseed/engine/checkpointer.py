"""Training checkpoints: Detectron2's `DetectionCheckpointer` with atomic writes, `weights_only=True` loads and
strict key checks (docs/official_behaviours.md §12.2 [DESIGN]).

A training checkpoint `OUTPUT_DIR/model_{iter:07d}.pth` / `model_final.pth` holds
`{"model": state_dict, "trainer": {"iteration", "hooks": {"LRScheduler": ...}, "_trainer": {"optimizer",
"grad_scaler"}}, "iteration": int, "rng_states": [per-rank state, see rng_state.py]}` — tensors and primitive
containers only. `last_checkpoint` names the newest complete file; it is replaced atomically after the file itself,
so a run killed at any moment resumes from the last complete checkpoint.

Loading is strict: a checkpoint whose keys or shapes differ from the model raises `CheckpointMismatchError` naming the
parameters (no silent partial loads; convert official files with tools/convert_official_checkpoint.py first).
Two partial initialisations are explicit and checked: the text encoder (`MODEL.TEXT.INIT_WEIGHTS`) and the backbone
from an ImageNet classification checkpoint (`MODEL.BACKBONE.INIT_WEIGHTS`).
"""

from __future__ import annotations

import logging
import os
import re

from detectron2.checkpoint import DetectionCheckpointer
from torch import nn

from openseed.checkpoint.io import atomic_write, load_checkpoint, save_checkpoint

logger = logging.getLogger(__name__)

TEXT_ENCODER_PATH = "sem_seg_head.predictor.lang_encoder"
BACKBONE_PATH = "backbone"
# In an ImageNet classification checkpoint but not in the detection backbone: the classifier, its final norm, and
# the shifted-window attention masks (recomputed by the model for every input size).
CLASSIFICATION_ONLY_KEYS = re.compile(r"^(head\.|norm\.)|\.attn_mask$")
# In the detection backbone but not in a classification checkpoint: the per-level output norms (`norm0`..`norm3`).
DETECTION_ONLY_KEYS = re.compile(r"^norm\d+\.")
_MAX_LISTED = 20
# The temporary file of an unfinished atomic write (openseed.checkpoint.io.atomic_write) of a checkpoint or its tag.
PARTIAL_WRITE = re.compile(r"\.(model_\w+\.pth|last_checkpoint)\.\w+\.tmp")


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (the message names the file and the checkpoint that is kept)."""


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the model: missing, unexpected or differently shaped parameters."""


def _listed(names: list[str]) -> str:
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
        problems.append(f"{len(shapes)} parameter(s) with a different shape: {_listed(shapes)}")
    if missing:
        problems.append(f"{len(missing)} model parameter(s) missing from the checkpoint: {_listed(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} checkpoint parameter(s) the model does not have: {_listed(unexpected)}")
    if problems:
        raise CheckpointMismatchError(
            f"checkpoint {source} does not match the model architecture:\n  " + "\n  ".join(problems)
            + "\n(official checkpoints must first be converted with tools/convert_official_checkpoint.py; an ImageNet "
            "backbone checkpoint goes to MODEL.BACKBONE.INIT_WEIGHTS, a text-encoder one to MODEL.TEXT.INIT_WEIGHTS)"
        )


def read_checkpoint(path: str) -> dict:
    """Load `path` with `weights_only=True`; a plain state dict comes back as `{"model": state_dict}`."""
    loaded = load_checkpoint(path)
    return loaded if isinstance(loaded.get("model"), dict) else {"model": loaded}


def _model_state(checkpoint: dict) -> dict:
    return {k.removeprefix("module."): v for k, v in checkpoint["model"].items()}


class TrainingCheckpointer(DetectionCheckpointer):
    """`DetectionCheckpointer` that writes atomically, loads with `weights_only=True` and refuses mismatches."""

    _loading = ""  # the file being loaded, named in mismatch errors

    def save(self, name: str, **extra) -> None:
        """Write `save_dir/{name}.pth` (model, checkpointables, `extra`) atomically, then tag it as the last one."""
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        data.update({key: obj.state_dict() for key, obj in self.checkpointables.items()})
        data.update(extra)
        basename = f"{name}.pth"
        path = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {path}")
        try:
            save_checkpoint(data, path)
            self.tag_last_checkpoint(basename)
        except OSError as error:  # disk full, quota, file-size limit, read-only file system...
            previous = self.get_checkpoint_file() if self.has_checkpoint() else "none"
            raise CheckpointWriteError(
                f"could not write checkpoint {path}: {error.strerror or error}. Nothing was replaced: the previous "
                f"checkpoint ({previous}) and {os.path.join(self.save_dir, 'last_checkpoint')} are intact; free space "
                "and continue with --resume"
            ) from error

    def remove_partial_files(self) -> None:
        """Delete the temporary files of checkpoint writes that were killed (`.{name}.pth.*.tmp`), logging each."""
        if not self.save_dir or not os.path.isdir(self.save_dir):
            return
        for name in sorted(os.listdir(self.save_dir)):
            if PARTIAL_WRITE.fullmatch(name):
                os.unlink(os.path.join(self.save_dir, name))
                self.logger.warning(f"removed {os.path.join(self.save_dir, name)}: a checkpoint write that did not "
                                    "complete (the process was killed while saving)")

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        content = last_filename_basename.encode("utf-8")
        atomic_write(os.path.join(self.save_dir, "last_checkpoint"), lambda handle: handle.write(content))

    def _load_file(self, filename: str) -> dict:
        return read_checkpoint(filename)

    def load(self, path: str, checkpointables: list[str] | None = None) -> dict:
        """Load `path` (model strictly, then the named checkpointables, default all); returns the other entries."""
        if path and not os.path.isfile(path):
            raise FileNotFoundError(f"checkpoint file {path!r} does not exist")
        self._loading = path
        return super().load(path, checkpointables=checkpointables)

    def _load_model(self, checkpoint: dict) -> None:
        state = _model_state(checkpoint)
        del checkpoint["model"]
        check_state_dict_fits(self.model.state_dict(), state, self._loading)
        self.model.load_state_dict(state, strict=True)


def _submodule_state(path: str, submodule: str) -> dict:
    """The tensors of `path` relative to `submodule`: a full-model file contributes only the keys under
    `submodule.` (the others are ignored, logged); a file without such keys is taken as relative already."""
    state = _model_state(read_checkpoint(path))
    prefix = submodule + "."
    if not any(key.startswith(prefix) for key in state):
        return state
    relative = {key.removeprefix(prefix): value for key, value in state.items() if key.startswith(prefix)}
    logger.info(f"{path}: using the {len(relative)} tensors under {prefix}, ignoring {len(state) - len(relative)}")
    return relative


def load_text_encoder_weights(model: nn.Module, path: str) -> None:
    """Load only the text encoder (`sem_seg_head.predictor.lang_encoder`) from `path` (MODEL.TEXT.INIT_WEIGHTS).

    The file holds either keys relative to the text encoder (`lang_encoder.*`, `lang_proj`, `logit_scale`) or
    full-model keys, of which only those under `sem_seg_head.predictor.lang_encoder.` are used. Every text-encoder
    parameter must be present with its shape.
    """
    text_encoder = model.get_submodule(TEXT_ENCODER_PATH)
    state = _submodule_state(path, TEXT_ENCODER_PATH)
    check_state_dict_fits(text_encoder.state_dict(), state, f"{path} (MODEL.TEXT.INIT_WEIGHTS)")
    text_encoder.load_state_dict(state, strict=True)
    logger.info(f"Loaded the text encoder from {path}")


def load_backbone_weights(model: nn.Module, path: str) -> None:
    """Initialise `model.backbone` from an ImageNet classification checkpoint (MODEL.BACKBONE.INIT_WEIGHTS).

    The file is the official Swin release (`{"model": state_dict}`, e.g. swin_tiny_patch4_window7_224.pth) or any
    state dict with the backbone's keys, bare or under `backbone.`. Classification-only keys (`CLASSIFICATION_ONLY_KEYS`)
    are dropped and the detection-only output norms keep their initialisation, both logged; every other backbone
    tensor must be present with its shape (else `CheckpointMismatchError`, e.g. a window size that differs).
    """
    backbone = model.get_submodule(BACKBONE_PATH)
    state = _submodule_state(path, BACKBONE_PATH)
    dropped = sorted(key for key in state if CLASSIFICATION_ONLY_KEYS.search(key))
    state = {key: value for key, value in state.items() if key not in dropped}
    own = backbone.state_dict()
    kept = {key: value for key, value in own.items() if key not in state and DETECTION_ONLY_KEYS.match(key)}
    check_state_dict_fits(own, {**kept, **state}, f"{path} (MODEL.BACKBONE.INIT_WEIGHTS)")
    backbone.load_state_dict({**kept, **state}, strict=True)
    logger.info(f"Loaded the backbone from {path}: {len(state)} tensors; dropped {len(dropped)} classification-only "
                f"({_listed(dropped)}); newly initialised: {_listed(sorted(kept)) or 'none'}")
