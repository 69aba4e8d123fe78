"""Capture and restore every random-number generator a training step draws from, in a `weights_only`-loadable form.

A state is a dict of tensors and Python scalars (no NumPy arrays, no tuples of arbitrary objects):
`{"torch": uint8 tensor, "cuda": uint8 tensor or None, "numpy": {...}, "python": {...}}`.
`gather_rng_states` collects one state per rank (a collective call: every rank must call it).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch
from detectron2.utils import comm


def capture_rng_state(device: torch.device) -> dict:
    """The current state of Python's, NumPy's, torch's CPU and (on a CUDA `device`) torch's CUDA generator."""
    _, mt_keys, position, has_gauss, cached_gaussian = np.random.get_state()
    version, python_state, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "numpy": {
            "keys": torch.from_numpy(mt_keys.astype(np.int64)),
            "pos": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "python": {"version": version, "state": torch.tensor(python_state, dtype=torch.int64), "gauss_next": gauss_next},
    }


def restore_rng_state(state: dict, device: torch.device) -> None:
    """Set every generator to `state` (as returned by `capture_rng_state`)."""
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state["cuda"] is not None:
        torch.cuda.set_rng_state(state["cuda"], device)
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    python_state = state["python"]
    random.setstate((python_state["version"], tuple(python_state["state"].tolist()), python_state["gauss_next"]))


def gather_rng_states(device: torch.device) -> list[dict]:
    """The RNG state of every rank, indexed by rank (collective: call on all ranks)."""
    return comm.all_gather(capture_rng_state(device))


@contextlib.contextmanager
def preserved_rng_state(device: torch.device) -> Iterator[None]:
    """Run a block (e.g. a periodic evaluation) without changing the generators seen by the code after it."""
    state = capture_rng_state(device)
    try:
        yield
    finally:
        restore_rng_state(state, device)
