"""Training checkpoints: Detectron2's `DetectionCheckpointer` with atomic writes, `weights_only=True` loads and
strict key checks (docs/official_behaviours.md §12.2 [DESIGN]).

A training checkpoint `OUTPUT_DIR/model_{iter:07d}.pth` / `model_final.pth` holds
`{"model": state_dict, "trainer": {"iteration", "hooks": {"LRScheduler": ...}, "_trainer": {"optimizer",
"grad_scaler"}}, "iteration": int, "rng_states": [per-rank state, see rng_state.py]}` — tensors and primitive
containers only. `last_checkpoint` names the newest complete file; it is replaced atomically after the file itself,
so a run killed at any moment resumes from the last complete checkpoint.

Loading is strict (`openseed.checkpoint.strict`): a checkpoint whose keys or shapes differ from the model raises
`CheckpointMismatchError` naming the parameters. This class only adapts Detectron2's checkpointer to
`openseed.checkpoint`, where reading, writing, converting and initialising weights live.
"""

from __future__ import annotations

import os
import re

from detectron2.checkpoint import DetectionCheckpointer

from openseed.checkpoint.io import atomic_write, save_checkpoint
from openseed.checkpoint.strict import load_state_strictly, model_state, read_checkpoint

# The temporary file of an unfinished atomic write (openseed.checkpoint.io.atomic_write) of a checkpoint or its tag.
PARTIAL_WRITE = re.compile(r"\.(model_\w+\.pth|last_checkpoint)\.\w+\.tmp")


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (the message names the file and the checkpoint that is kept)."""


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
        state = model_state(checkpoint)
        del checkpoint["model"]
        load_state_strictly(self.model, state, self._loading)

