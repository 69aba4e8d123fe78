"""Mixed precision from the config: `SOLVER.AMP` (training) and `TEST.AMP` (evaluation), each `ENABLED` + `DTYPE`.

Autocast runs on CUDA (float16 or bfloat16) and on CPU (bfloat16 only: CPU float16 GEMMs have no fast kernels, so a
float16 request on CPU runs in float32, logged). Inside the model the pixel decoder, the decoder layers and the
matcher opt out of autocast and run in float32, as the reference implementation does on GPU; with
`MODEL.ENCODER.AUTOCAST_FFN` the feed-forward GEMMs of the pixel decoder run in the autocast dtype too (README,
"bfloat16 on CPU"). `bf16_gemm_inputs` is the middle ground on CPU: float32 GEMMs whose inputs are rounded to
bfloat16 while the products accumulate and return in float32 (`MODEL.ENCODER.CPU_BFLOAT16`, the semantic sum).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

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


@contextlib.contextmanager
def bf16_gemm_inputs(device_type: str, enabled: bool = True) -> Iterator[None]:
    """Inside, float32 GEMMs on CPU (`linear`, `addmm`, `matmul`) may round their inputs to bfloat16 and accumulate
    and return float32 (oneDNN's fp32 math mode "bf16"; fast with AVX512-BF16/AMX, about 1.5× per FFN GEMM at
    800×1216 on a Xeon). The mode is a permission: on the AMD EPYC tested (AVX512-BF16, no AMX) oneDNN keeps float32
    math (within 1e-6 of exact) and only its GEMM kernel replaces MKL's. The error is at most that of bfloat16
    inputs (≤ 2⁻⁸ relative each), not of bfloat16 outputs as under autocast. A no-op when `enabled` is False, on
    other devices (CUDA keeps its own float32 settings) and with a torch that lacks the
    setting; the previous setting is restored on exit.
    """
    flags = getattr(torch.backends.mkldnn, "matmul", None)
    if not enabled or device_type != "cpu" or not hasattr(flags, "fp32_precision"):
        yield
        return
    previous = flags.fp32_precision
    flags.fp32_precision = "bf16"
    try:
        yield
    finally:
        flags.fp32_precision = previous


def cpu_bfloat16_autocast(device_type: str) -> bool:
    """True inside `torch.autocast("cpu", dtype=torch.bfloat16)` for a CPU computation."""
    return (device_type == "cpu" and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == torch.bfloat16)
