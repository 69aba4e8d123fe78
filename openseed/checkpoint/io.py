"""Reading and writing checkpoint files safely.

`save_checkpoint` writes atomically: a temporary file in the destination directory, flushed and fsync'ed, then
`os.replace`d over the destination, so a crash leaves either the old file or the new one, never a partial file.
`load_checkpoint` reads tensors only: `torch.load(weights_only=True)` (a pickle that would run code is refused)
or safetensors (chosen by the `.safetensors` suffix). Errors name the file.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file as load_safetensors_file
from safetensors.torch import save as safetensors_bytes

SAFETENSORS_SUFFIX = ".safetensors"


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable, unsafe or has an unexpected layout."""


def is_safetensors(path: str | os.PathLike) -> bool:
    return Path(path).suffix == SAFETENSORS_SUFFIX


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint file onto the CPU without executing any pickled code.

    Returns:
        `.safetensors`: a flat {name: Tensor} dict. Otherwise the saved object (a dict of tensors, possibly nested,
        e.g. `{"model": state_dict, ...}`).
    Raises:
        CheckpointError: the file is missing, corrupt, or holds objects other than tensors and plain containers.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    if is_safetensors(path):
        try:
            return load_safetensors_file(str(path), device="cpu")
        except SafetensorError as error:
            raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from error
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path}: refused: the file holds objects other than tensors and plain containers, which "
            f"weights_only loading does not execute ({error})"
        ) from error
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as error:
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({error})") from error
    except OSError as error:  # e.g. a zip archive cut short: "[Errno 22] Invalid argument"
        raise CheckpointError(f"{path}: corrupt, truncated or unreadable checkpoint ({error})") from error
    if not isinstance(loaded, Mapping):
        raise CheckpointError(f"{path}: expected a dict at the top level, found {type(loaded).__name__}")
    return dict(loaded)


def save_checkpoint(obj: Mapping, path: str | os.PathLike) -> None:
    """Write `obj` to `path` atomically.

    `.safetensors` paths take a flat {name: Tensor} dict (tensors that share memory, e.g. aliases of one module,
    are stored as separate copies, as the format requires); other paths are written with `torch.save`.
    """
    path = Path(path)
    if is_safetensors(path):
        payload = safetensors_bytes(_unshared_tensors(obj), metadata={"format": "pt"})
        atomic_write(path, lambda handle: handle.write(payload))
    else:
        atomic_write(path, lambda handle: torch.save(obj, handle))


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Call `write(handle)` on a temporary file beside `path`, fsync it, then rename it to `path`.

    If `write` (or anything before the rename) fails, the temporary file is removed and `path` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _unshared_tensors(tensors: Mapping) -> dict[str, torch.Tensor]:
    """A flat dict whose tensors are contiguous and own their memory (safetensors refuses shared storage)."""
    out, seen = {}, set()
    for name, tensor in tensors.items():
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"safetensors files hold tensors only; {name!r} is a {type(tensor).__name__}")
        storage = tensor.untyped_storage().data_ptr()
        tensor = tensor.detach().cpu().contiguous()
        out[name] = tensor.clone() if storage in seen else tensor
        seen.add(storage)
    return out


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable (POSIX; directories cannot be opened for fsync on Windows)."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
