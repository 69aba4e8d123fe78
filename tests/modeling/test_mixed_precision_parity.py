"""bfloat16 autocast on CPU against float32 on the parity fixture (official weights regenerated from refdata).

Quality guard of `TEST.AMP.DTYPE bfloat16`: the semantic argmax agrees with float32 on ≥ 99% of the pixels in the
default setting (the pixel decoder's FFN and value/output projections with bfloat16 inputs and its FPN convs in
bfloat16, `MODEL.ENCODER.CPU_BFLOAT16`), with the pixel decoder and the decoder layers in float32 as the reference
runs them (`CPU_BFLOAT16 False`), and with the pixel decoder's FFN GEMMs in bfloat16 (`MODEL.ENCODER.AUTOCAST_FFN`).
"""

import pytest
import torch

from tests.refdata_utils import parity_image, parity_model

pytestmark = pytest.mark.slow

SIZE = 512


@pytest.fixture(scope="module")
def fp32_semantic(refdata):
    model, vocabulary = parity_model(refdata)
    inputs = [{"image": parity_image(refdata), "height": SIZE, "width": SIZE}]
    with torch.no_grad():
        result = model(inputs, vocabulary=vocabulary, task="semantic")[0]
    return model, vocabulary, inputs, result["sem_seg"]


@pytest.mark.parametrize("cpu_bfloat16, autocast_ffn", [(True, False), (False, False), (False, True)],
                         ids=["cpu_bfloat16_parts", "reference_float32_parts", "ffn_in_bfloat16"])
def test_bfloat16_semantic_argmax_agrees_with_float32(fp32_semantic, cpu_bfloat16, autocast_ffn):
    model, vocabulary, inputs, reference = fp32_semantic
    pixel_decoder = model.sem_seg_head.pixel_decoder
    assert pixel_decoder.cpu_bfloat16 and not pixel_decoder.autocast_ffn  # the defaults
    pixel_decoder.cpu_bfloat16, pixel_decoder.autocast_ffn = cpu_bfloat16, autocast_ffn
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            sem_seg = model(inputs, vocabulary=vocabulary, task="semantic")[0]["sem_seg"]
    finally:
        pixel_decoder.cpu_bfloat16, pixel_decoder.autocast_ffn = True, False
    assert sem_seg.dtype == torch.float32 and sem_seg.shape == reference.shape
    agreement = float((sem_seg.argmax(0) == reference.argmax(0)).float().mean())
    print(f"bfloat16 (CPU bfloat16 parts: {cpu_bfloat16}, FFN in bfloat16: {autocast_ffn}) semantic argmax agreement "
          f"with float32: {agreement:.4f}")
    assert agreement >= 0.99
    assert not torch.equal(sem_seg, reference)  # the autocast really ran
