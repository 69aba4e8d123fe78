"""`addmm_float32_`: a float32 matrix product on CPU through oneDNN instead of the BLAS torch calls (MKL).

MKL runs its AVX2 code on AMD processors: on a 2-core AMD EPYC (AVX-512, no AMX) the semantic sum's
143×400 @ 400×14592 product of one band of rows took 13.0 ms in `torch.mm` and 8.3 ms in oneDNN's inner product
(`torch.ops.mkldnn._linear_pointwise`), which uses AVX-512 there; the float32 eval at 800×1216 went 6.97 → 6.4 s.
The product is the same float32 math summed in another order. Where oneDNN cannot or should not run (another
device or dtype, autograd, a torch built without it or with it disabled, tracing, export or compilation),
`Tensor.addmm_` computes it.
"""

from __future__ import annotations

import torch
from torch import Tensor


def addmm_float32_(out: Tensor, a: Tensor, b: Tensor, beta: float = 1.0) -> Tensor:
    """out ← beta·out + a @ b in place (a M×K, b K×N, out M×N; any strides); `out` is not read when beta is 0.

    For float32 CPU tensors without autograd the product runs in oneDNN (into a new M×N tensor, then added to
    `out`); otherwise this is `out.addmm_(a, b, beta=beta)`.
    """
    if not _onednn_applies(a, b):
        return out.addmm_(a, b, beta=beta)
    product = torch.ops.mkldnn._linear_pointwise(a, b.t(), None, "none", [], "")
    if beta == 0:
        return out.copy_(product)
    return out.mul_(beta).add_(product) if beta != 1 else out.add_(product)


def _onednn_applies(a: Tensor, b: Tensor) -> bool:
    return (a.device.type == "cpu" and b.device.type == "cpu"
            and a.dtype == torch.float32 and b.dtype == torch.float32
            and not (torch.is_grad_enabled() and (a.requires_grad or b.requires_grad))
            and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
            and hasattr(torch.ops.mkldnn, "_linear_pointwise")
            and not (torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export()
                     or torch.compiler.is_compiling()))
