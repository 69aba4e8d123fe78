"""`addmm_float32_`: float32 CPU products through oneDNN, `Tensor.addmm_` everywhere else."""

import pytest
import torch

from openseed.utils.onednn import addmm_float32_

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
