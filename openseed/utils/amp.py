"""Mixed precision from the config: `SOLVER.AMP` (training) and `TEST.AMP` (evaluation), each `ENABLED` + `DTYPE`.

Autocast runs on CUDA (float16 or bfloat16) and on CPU (bfloat16 only: CPU float16 GEMMs have no fast kernels, so a
float16 request on CPU runs in float32, logged). Inside the model the pixel decoder, the decoder layers and the
matcher opt out of autocast and run in float32, as the reference implementation does on GPU; with
`MODEL.ENCODER.AUTOCAST_FFN` the feed-forward GEMMs of the pixel decoder run in the autocast dtype too (README,
"bfloat16 on CPU").
"""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)

AMP_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}
DEVICE_DTYPES = {"cuda": ("float16", "bfloat16"), "cpu": ("bfloat16",)}


def autocast_dtype(cfg, section: str) -> torch.dtype | None:
    """The autocast dtype of `cfg.<section>.AMP` ("SOLVER" or "TEST"), or None for float32 (AMP off, or the
    dtype has no autocast on the device of `MODEL.DEVICE`: float16 on CPU, anything on other devices)."""
    amp = getattr(cfg, section).AMP
    if not amp.ENABLED:
        return None
    if amp.DTYPE not in AMP_DTYPES:
        raise ValueError(f"{section}.AMP.DTYPE={amp.DTYPE!r}: expected one of {sorted(AMP_DTYPES)}")
    device_type = torch.device(cfg.MODEL.DEVICE).type
    if amp.DTYPE not in DEVICE_DTYPES.get(device_type, ()):
        logger.info(f"{section}.AMP.DTYPE={amp.DTYPE!r} has no autocast on MODEL.DEVICE={cfg.MODEL.DEVICE!r}: "
                    "running in float32")
        return None
    return AMP_DTYPES[amp.DTYPE]
