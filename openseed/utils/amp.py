"""Mixed precision from the config: `SOLVER.AMP` (training) and `TEST.AMP` (evaluation), each `ENABLED` + `DTYPE`.

Autocast runs on CUDA only; on other devices the model runs in float32 (logged). Inside the model the pixel decoder,
the decoder layers and the matcher opt out of autocast and run in float32, as the reference implementation does.
"""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)

AMP_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def autocast_dtype(cfg, section: str) -> torch.dtype | None:
    """The autocast dtype of `cfg.<section>.AMP` ("SOLVER" or "TEST"), or None for float32 (AMP off, or the
    device of `MODEL.DEVICE` is not CUDA)."""
    amp = getattr(cfg, section).AMP
    if not amp.ENABLED:
        return None
    if amp.DTYPE not in AMP_DTYPES:
        raise ValueError(f"{section}.AMP.DTYPE={amp.DTYPE!r}: expected one of {sorted(AMP_DTYPES)}")
    if torch.device(cfg.MODEL.DEVICE).type != "cuda":
        logger.info(f"{section}.AMP.ENABLED is ignored on MODEL.DEVICE={cfg.MODEL.DEVICE!r}: running in float32")
        return None
    return AMP_DTYPES[amp.DTYPE]
