"""`linear_float32` and `addmm_float32_`: float32 CPU inference GEMMs through oneDNN, the torch op everywhere else."""

import pytest
import torch
from torch.nn import functional as F

from openseed.utils.amp import bf16_gemm_inputs
from openseed.utils.onednn import addmm_float32_, apply_linear, linear_float32

needs_onednn = pytest.mark.skipif(not hasattr(torch.ops.mkldnn, "_linear_pointwise"),
                                  reason="this torch has no oneDNN inner product")


def _operands(seed=0):
    generator = torch.Generator().manual_seed(seed)
    weights = torch.rand(40, 13, generator=generator)  # Q×K, used transposed as in the semantic sum
    probs = torch.rand(40, 3 * 57, generator=generator)  # Q×P
    return weights.t(), probs


@pytest.fixture
def onednn_calls(monkeypatch):
    """Counts the calls that reach oneDNN's inner product."""
    calls = []
    inner_product = torch.ops.mkldnn._linear_pointwise

    def counting(*args):
        calls.append(args[0].shape)
        return inner_product(*args)

    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", counting)
    return calls


@needs_onednn
@pytest.mark.parametrize("beta", [0.0, 1.0, 0.5])
def test_float32_cpu_product_runs_in_onednn_and_equals_addmm(beta, onednn_calls):
    a, b = _operands()
    start = torch.rand(13, 3 * 57)
    out = torch.full_like(start, float("nan")) if beta == 0 else start.clone()
    result = addmm_float32_(out, a, b, beta=beta)
    assert result is out
    expected = start.clone().addmm_(a, b, beta=beta) if beta else a @ b
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)  # beta 0 never reads the NaNs
    assert onednn_calls == [(13, 40)]


@needs_onednn
def test_strided_output_band_is_written_in_place(onednn_calls):
    a, b = _operands(1)
    full = torch.zeros(13, 9, 57)
    band = full[:, 3:6].view(13, -1)  # rows 3..5 of every class plane: the semantic sum's band view
    addmm_float32_(band, a, b, beta=0.0)
    torch.testing.assert_close(full[:, 3:6].reshape(13, -1), a @ b, rtol=1e-5, atol=1e-5)
    assert not full[:, :3].any() and not full[:, 6:].any()
    assert len(onednn_calls) == 1


@needs_onednn
@pytest.mark.parametrize("case", ["float64", "autograd", "onednn_disabled"])
def test_other_cases_fall_back_to_addmm(case, onednn_calls):
    a, b = _operands(2)
    if case == "float64":
        a, b = a.double(), b.double()
    if case == "autograd":
        a = a.clone().requires_grad_()
    out = torch.zeros(13, 3 * 57, dtype=a.dtype)
    with torch.backends.mkldnn.flags(enabled=case != "onednn_disabled"):
        result = addmm_float32_(out, a, b, beta=0.0)
    assert torch.equal(result, torch.zeros_like(out).addmm_(a, b, beta=0.0))
    assert onednn_calls == []
    if case == "autograd":
        result.sum().backward()
        torch.testing.assert_close(a.grad, b.sum(1).expand(13, -1), rtol=1e-5, atol=1e-5)


def _linear_operands(seed=3):
    generator = torch.Generator().manual_seed(seed)
    layer = torch.nn.Linear(24, 40)
    with torch.no_grad():
        layer.weight.normal_(generator=generator)
        layer.bias.normal_(generator=generator)
    return torch.randn(2, 9, 24, generator=generator), layer


@needs_onednn
@pytest.mark.parametrize("relu", [False, True])
def test_linear_runs_in_onednn_without_autograd_with_the_relu_fused(relu, onednn_calls):
    x, layer = _linear_operands()
    expected = F.linear(x, layer.weight, layer.bias)
    if relu:
        expected = expected.relu()
        assert (expected == 0).any() and (expected > 0).any()
    with torch.no_grad():
        result = linear_float32(x, layer.weight, layer.bias, relu=relu)
    assert result.shape == (2, 9, 40) and result.dtype == torch.float32
    torch.testing.assert_close(result, expected, rtol=1e-5, atol=1e-5)
    assert onednn_calls == [(2, 9, 24)]


@needs_onednn
@pytest.mark.parametrize("case", ["autograd", "autocast", "bf16_gemm_inputs", "float64"])
def test_linear_falls_back_to_torch_where_oneDNN_would_change_the_contract(case, onednn_calls):
    """Under autograd, CPU autocast and the bfloat16-inputs GEMM setting the torch op keeps its meaning (gradients,
    the autocast dtype, the setting); other dtypes are not float32."""
    x, layer = _linear_operands()
    if case == "float64":
        x, layer = x.double(), layer.double()
    if case == "autocast":
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            result = linear_float32(x, layer.weight, layer.bias, relu=True)
        assert result.dtype == torch.bfloat16
    elif case == "bf16_gemm_inputs":
        with torch.no_grad(), bf16_gemm_inputs("cpu"):
            result = linear_float32(x, layer.weight, layer.bias, relu=True)
            expected = F.linear(x, layer.weight, layer.bias).relu()
        assert torch.equal(result, expected)
    else:
        result = linear_float32(x, layer.weight, layer.bias, relu=True)
        assert torch.equal(result, F.linear(x, layer.weight, layer.bias).relu())
    if case == "autograd":
        result.sum().backward()
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    assert onednn_calls == []


@needs_onednn
def test_apply_linear_calls_wrapped_or_hooked_modules_as_they_are(onednn_calls):
    """A plain `nn.Linear` runs through oneDNN; a module that adds to the product (a LoRA-style wrapper: its own
    forward) or has hooks is called, so its contribution is kept."""
    x, layer = _linear_operands()

    class WithLowRankTerm(torch.nn.Linear):
        def forward(self, inputs):
            return super().forward(inputs) + 1.0

    wrapped = WithLowRankTerm(24, 40)
    wrapped.load_state_dict(layer.state_dict())
    hooked = torch.nn.Linear(24, 40)
    hooked.load_state_dict(layer.state_dict())
    hooked.register_forward_hook(lambda _module, _inputs, output: output * 2)
    with torch.no_grad():
        plain = apply_linear(layer, x, relu=True)
        assert onednn_calls == [(2, 9, 24)]
        torch.testing.assert_close(apply_linear(wrapped, x), layer(x) + 1.0)
        torch.testing.assert_close(apply_linear(hooked, x, relu=True), (layer(x) * 2).relu())
    assert onednn_calls == [(2, 9, 24)]
    torch.testing.assert_close(plain, layer(x).relu(), rtol=1e-5, atol=1e-5)


@needs_onednn
def test_flop_counter_sees_the_torch_gemms(onednn_calls):
    """Under a dispatch mode (`torch.utils.flop_counter`, as `tools/benchmark.py eval --count-flops`) the torch op
    runs, so the network's FLOPs include these GEMMs."""
    from torch.utils.flop_counter import FlopCounterMode

    x, layer = _linear_operands()
    a, b = _operands()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        linear_float32(x, layer.weight, layer.bias, relu=True)
        addmm_float32_(torch.empty(13, 3 * 57), a, b, beta=0.0)
    assert counter.get_total_flops() == 2 * 18 * 24 * 40  # the linear (the counter has no formula for addmm_)
    assert onednn_calls == []
