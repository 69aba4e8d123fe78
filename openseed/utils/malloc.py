"""glibc malloc settings for CPU runs: large tensors reuse heap memory instead of fresh kernel pages.

PyTorch's CPU allocator takes every tensor from `malloc`. With glibc's defaults, blocks above the (dynamic) mmap
threshold are mapped for each allocation, zero-filled by the kernel page by page on first touch, and unmapped when
freed; a forward pass that allocates and frees activations of the same sizes over and over spends a large share of
its time in page faults (on the paper model at 800×1216: about 2.5 s of system time per 8 s forward). The settings
below serve blocks up to `MMAP_THRESHOLD_BYTES` from the heap, keep up to `TRIM_THRESHOLD_BYTES` of freed memory at
its top for the next allocation and grow it in steps of `TOP_PAD_BYTES`. Results are bit-identical (only where
memory comes from changes); peak RSS stays about the same (measured in README "Performance").

The entry points (`tools/train_net.py`, `tools/eval_zeroshot.py`, `tools/demo.py`, `tools/run_demo.py`) and the
benchmark's child processes call `tune_malloc()` at start-up; `OPENSEED_MALLOC=glibc` keeps glibc's defaults. Elsewhere
(other C libraries, or macOS and Windows) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import platform

M_TRIM_THRESHOLD = -1  # mallopt parameter numbers of glibc's <malloc.h>
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1 << 30
TRIM_THRESHOLD_BYTES = (1 << 31) - 1  # mallopt takes a C int
TOP_PAD_BYTES = 1 << 29
OPT_OUT_VARIABLE = "OPENSEED_MALLOC"

logger = logging.getLogger(__name__)


def tune_malloc() -> bool:
    """Apply the settings of the module docstring to this process; True when they are in effect.

    Does nothing (returns False) when `OPENSEED_MALLOC=glibc` is set or the C library is not glibc.
    """
    choice = os.environ.get(OPT_OUT_VARIABLE, "tuned")
    if choice not in ("tuned", "glibc"):
        raise ValueError(f"{OPT_OUT_VARIABLE}={choice!r}: expected 'tuned' (default) or 'glibc'")
    libc = _glibc()
    if choice == "glibc" or libc is None:
        return False
    settings = {M_MMAP_THRESHOLD: MMAP_THRESHOLD_BYTES, M_TRIM_THRESHOLD: TRIM_THRESHOLD_BYTES,
                M_TOP_PAD: TOP_PAD_BYTES}
    accepted = [libc.mallopt(parameter, value) == 1 for parameter, value in settings.items()]
    if not all(accepted):
        logger.warning("glibc mallopt refused some malloc settings (accepted: %s); the others are in effect",
                       dict(zip(settings, accepted)))
    return all(accepted)


def release_free_heap() -> None:
    """Hand the heap memory freed so far back to the kernel (glibc `malloc_trim(0)`; elsewhere nothing).

    The settings above keep freed memory for re-use; after a one-off allocation-heavy step (embedding a vocabulary)
    that memory would otherwise stay resident and add to the peak of what follows.
    """
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """This process's C library when it is glibc (loaded once), else None."""
    return ctypes.CDLL(ctypes.util.find_library("c")) if platform.libc_ver()[0] == "glibc" else None
