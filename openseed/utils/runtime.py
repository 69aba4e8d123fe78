"""Process-wide CPU settings the entry points apply at start-up: malloc tuning and flushing denormal floats.

`tune_cpu_runtime()` is called first thing by the tools (`tools/train_net.py`, `tools/eval_zeroshot.py`,
`tools/demo.py`, ...) and by the benchmark's child processes, before any tensor work starts threads.

Denormal floats (|x| < 2⁻¹²⁶ in float32) take a slow microcode path on x86 CPUs. They arise in the shifted-window
attention of Swin: the official shift mask adds -100 across regions, softmax gives those keys probabilities of
~e⁻¹⁰⁰ ≈ 4e-44 (denormal), and every matmul that reads them, and the output projection after them, runs ~25×
slower (84 against 3 ms per stage-3 projection at 800×1216; the float32 backbone 1.08 → 0.85 s). With flush-to-zero
and denormals-are-zero (`torch.set_flush_denormal(True)`) such values count as 0: results change only by amounts
below 1.2e-38, far under float32 rounding of any normal value. The setting is per thread and OpenMP worker threads
copy it from the thread that starts them, so it must be applied before the first parallel operation;
`OPENSEED_DENORMALS=keep` opts out.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from openseed.utils.malloc import tune_malloc

DENORMALS_VARIABLE = "OPENSEED_DENORMALS"


def flush_denormals() -> bool:
    """Flush denormal floats to zero in this thread and the threads it starts; True when in effect.

    Does nothing (returns False) with `OPENSEED_DENORMALS=keep` or where the CPU has no such mode.
    """
    choice = os.environ.get(DENORMALS_VARIABLE, "flush")
    if choice not in ("flush", "keep"):
        raise ValueError(f"{DENORMALS_VARIABLE}={choice!r}: expected 'flush' (default) or 'keep'")
    if choice == "keep":
        return False
    for dtype in (np.float16, np.float32, np.float64):
        np.finfo(dtype)  # numpy measures (and caches) its limits while denormals still exist: no warnings later
    return torch.set_flush_denormal(True)


def tune_cpu_runtime() -> dict[str, bool]:
    """Apply `tune_malloc` (openseed.utils.malloc) and `flush_denormals`; which of them are in effect."""
    return {"malloc_tuned": tune_malloc(), "denormals_flushed": flush_denormals()}
