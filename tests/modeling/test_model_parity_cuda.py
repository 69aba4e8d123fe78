"""Parity with the official outputs on CUDA (skipped without a GPU or the reference data), TF32 off.

The parity fixture of tests/modeling/test_model_parity.py run on `MODEL.DEVICE cuda`: raw outputs within 1e-4 of the
official CPU float32 outputs with TF32 matmuls and convolutions disabled, and the semantic argmax agreeing on ≥ 99%.
"""

import pytest
import torch

from tests.refdata_utils import official_outputs, parity_image, parity_model

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

TOLERANCE = 1e-4
SIZE = 512


@pytest.fixture
def no_tf32():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_parity_on_cuda_without_tf32(refdata, no_tf32):
    model, vocabulary = parity_model(refdata, ["MODEL.DEVICE", "cuda"])
    assert model.device.type == "cuda"
    expected = official_outputs(refdata)
    captured = {}
    model.sem_seg_head.register_forward_hook(lambda m, i, o: captured.setdefault("outputs", o))
    inputs = [{"image": parity_image(refdata), "height": SIZE, "width": SIZE}]
    with torch.no_grad():
        result = model(inputs, vocabulary=vocabulary)[0]
    outputs = captured["outputs"]
    errors = {
        "pred_logits": float((outputs["pred_logits"].cpu() - expected["pred_logits"]).abs().max()),
        "pred_boxes": float((outputs["pred_boxes"].cpu() - expected["pred_boxes"]).abs().max()),
        "pred_masks.stride4": float((outputs["pred_masks"][..., ::4, ::4].cpu()
                                     - expected["pred_masks.stride4"]).abs().max()),
    }
    print(f"CUDA (TF32 off) max abs errors vs the official CPU outputs: {errors}")
    assert max(errors.values()) <= TOLERANCE, errors
    agreement = (result["sem_seg"].argmax(0).cpu() == expected["post.sem_seg.argmax"].long()).float().mean()
    assert agreement >= 0.99, f"semantic argmax agreement {agreement:.4f}"
