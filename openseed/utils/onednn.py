"""Float32 GEMMs of CPU inference through oneDNN instead of the BLAS torch calls (MKL): `apply_linear`,
`linear_float32`, `addmm_float32_`.

MKL runs its AVX2 code on AMD processors, oneDNN's inner product (`torch.ops.mkldnn._linear_pointwise`) uses
AVX-512 there. On a 2-core AMD EPYC (AVX-512, no AMX), at 800×1216: the semantic sum's 143×400 @ 400×14592
product of one band of rows took 13.0 ms with MKL and 8.3 ms with oneDNN (float32 post-processing 2.42 → 1.80 s);
the pixel decoder's encoder FFNs (ReLU fused) took the pixel decoder 2.90 → 2.65 s. The products are the same
float32 math summed in another order. The other linears of the model (backbone, decoder, attention projections)
gained nothing measurable this way and stay on `F.linear`.

oneDNN runs only for float32 CPU tensors without autograd, outside autocast and with float32 GEMMs left at float32
math (not inside `openseed.utils.amp.bf16_gemm_inputs`), in a torch built with oneDNN and with it enabled, and not
while tracing, exporting or compiling or under a dispatch mode (`torch.utils.flop_counter` counts torch's GEMMs,
not oneDNN's); otherwise the torch operation computes the same result.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils._python_dispatch import is_in_torch_dispatch_mode


def apply_linear(linear: nn.Module, x: Tensor, relu: bool = False) -> Tensor:
    """`linear(x)`, followed by ReLU when `relu`. A plain `nn.Linear` without hooks runs as `linear_float32` of its
    parameters; any other module (a LoRA adapter wrapping the linear, a module with hooks) is called as it is, so
    whatever it adds to the product is kept."""
    if type(linear) is nn.Linear and not (linear._forward_hooks or linear._forward_pre_hooks):
        return linear_float32(x, linear.weight, linear.bias, relu)
    output = linear(x)
    return F.relu(output, inplace=True) if relu else output


def linear_float32(x: Tensor, weight: Tensor, bias: Tensor | None = None, relu: bool = False) -> Tensor:
    """`F.linear(x, weight, bias)` (…×in -> …×out), followed by ReLU when `relu` (fused into oneDNN's GEMM)."""
    if _onednn_applies(x, weight):
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "relu" if relu else "none", [], "")
    output = F.linear(x, weight, bias)
    return F.relu(output, inplace=True) if relu else output


def addmm_float32_(out: Tensor, a: Tensor, b: Tensor, beta: float = 1.0) -> Tensor:
    """out ← beta·out + a @ b in place (a M×K, b K×N, out M×N; any strides); `out` is not read when beta is 0.

    Through oneDNN the product goes to a new M×N tensor that is then added to `out`; otherwise this is
    `out.addmm_(a, b, beta=beta)`.
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
            and not torch.is_autocast_enabled("cpu")
            and _float32_math()
            and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
            and hasattr(torch.ops.mkldnn, "_linear_pointwise")
            and not (torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export()
                     or torch.compiler.is_compiling() or is_in_torch_dispatch_mode()))


def _float32_math() -> bool:
    """Float32 GEMMs are left at float32 math (no `bf16_gemm_inputs`, nor a user's setting, in effect)."""
    flags = getattr(torch.backends.mkldnn, "matmul", None)
    return getattr(flags, "fp32_precision", "none") in ("none", "ieee")
