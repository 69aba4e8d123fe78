"""The model under autocast (bfloat16 on CPU here; float16 on CUDA in `tests/engine/test_engine_cuda.py`): the pixel
decoder and the decoder layers run in float32 as in the reference, the rest in half precision, and the results stay
close to the float32 ones for both inference and a joint training step."""

import torch
from detectron2.modeling import build_model

from openseed.benchmarks.inputs import synthetic_image, synthetic_training_sample
from openseed.config import setup_cfg
from openseed.utils.amp import bf16_gemm_inputs
from openseed.vocabulary import Vocabulary

TINY = "configs/tiny/tiny_decoupled.yaml"
NARROW_SWIN = ["MODEL.BACKBONE.NAME", "D2SwinTransformer", "MODEL.SWIN.EMBED_DIM", "16",
               "MODEL.SWIN.NUM_HEADS", "[1, 2, 4, 8]", "MODEL.SWIN.DEPTHS", "[2, 2, 2, 2]"]
VOCAB = Vocabulary.from_names(["cat", "dog", "car", "bus", "cup"], ["sky", "grass"])


def _model():
    torch.manual_seed(0)
    return build_model(setup_cfg(TINY, NARROW_SWIN))


def _output_dtypes(model):
    """Record the output dtype of the first pixel-decoder and decoder layers and of the first backbone block."""
    dtypes = {}
    modules = {"pixel decoder": model.sem_seg_head.pixel_decoder.transformer.encoder.layers[0],
               "decoder layer": model.sem_seg_head.predictor.decoder.layers[0],
               "backbone block": model.backbone.layers[0].blocks[0]}
    for name, module in modules.items():
        def hook(_module, _inputs, output, name=name):
            dtypes[name] = (output[0] if isinstance(output, tuple) else output).dtype
        module.register_forward_hook(hook)
    return dtypes


def test_inference_under_autocast_keeps_the_reference_float32_parts_and_stays_close():
    model = _model().eval()
    inputs = [{"image": synthetic_image(96, 128, seed=3)}]
    with torch.no_grad():
        reference = model(inputs, vocabulary=VOCAB, task=("instance", "semantic"))[0]
        dtypes = _output_dtypes(model)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model(inputs, vocabulary=VOCAB, task=("instance", "semantic"))[0]
    assert dtypes == {"pixel decoder": torch.float32, "decoder layer": torch.float32,
                      "backbone block": torch.bfloat16}
    assert mixed["sem_seg"].dtype == torch.float32 and mixed["sem_seg"].shape == reference["sem_seg"].shape
    assert (mixed["sem_seg"] - reference["sem_seg"]).abs().max() < 0.05 * reference["sem_seg"].abs().max()
    # which near-tied encoder tokens become queries changes with rounding in an untrained model: compare sizes only
    boxes, reference_boxes = mixed["instances"].pred_boxes.tensor, reference["instances"].pred_boxes.tensor
    assert boxes.dtype == torch.float32 and len(boxes) == len(reference_boxes) > 0 and torch.isfinite(boxes).all()
    assert mixed["instances"].pred_masks.shape == reference["instances"].pred_masks.shape


def test_joint_training_step_under_autocast_has_finite_close_losses_and_gradients():
    model = _model().train()
    cfg = setup_cfg(TINY, NARROW_SWIN)
    seg_set, det_set = cfg.DATASETS.TRAIN
    batch = {seg_set: [synthetic_training_sample(96, len(VOCAB), "seg", 4, seed=1)],
             det_set: [synthetic_training_sample(96, len(VOCAB), "det", 5, seed=2)]}
    totals = []
    for autocast in (False, True):
        model.zero_grad(set_to_none=True)
        torch.manual_seed(1)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            losses = model(batch, vocabulary=VOCAB)
        total = sum(losses.values())
        total.backward()
        assert total.dtype == torch.float32 and torch.isfinite(total)
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        totals.append(float(total))
    assert abs(totals[1] - totals[0]) < 0.05 * totals[0]


def test_pixel_decoder_ffn_runs_in_bfloat16_only_when_asked():
    """`AUTOCAST_FFN` against plain float32 parts (`CPU_BFLOAT16` off; its mode is tested below)."""
    model = _model().eval()
    model.sem_seg_head.pixel_decoder.cpu_bfloat16 = False
    layer = model.sem_seg_head.pixel_decoder.transformer.encoder.layers[0]
    dtypes = {}
    for name, module in {"linear1": layer.linear1, "linear2": layer.linear2, "value_proj": layer.self_attn.value_proj,
                         "layer": layer}.items():
        module.register_forward_hook(lambda _m, _i, out, name=name: dtypes.__setitem__(name, out.dtype))
    inputs = [{"image": synthetic_image(96, 128, seed=3)}]
    results = {}
    for autocast_ffn in (False, True):
        model.sem_seg_head.pixel_decoder.autocast_ffn = autocast_ffn
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            results[autocast_ffn] = model(inputs, vocabulary=VOCAB, task="semantic")[0]["sem_seg"]
        expected_ffn = torch.bfloat16 if autocast_ffn else torch.float32
        assert dtypes == {"linear1": expected_ffn, "linear2": expected_ffn, "value_proj": torch.float32,
                          "layer": torch.float32}
    assert not torch.equal(results[False], results[True])
    assert (results[True] - results[False]).abs().max() < 0.05 * results[False].abs().max()


def _gemm_precisions(model):
    """Record oneDNN's float32 GEMM setting as each GEMM of the first encoder layer starts, the dtype of the first
    FFN linear's output, and the dtype and layout of the FPN output conv."""
    seen = {}
    layer = model.sem_seg_head.pixel_decoder.transformer.encoder.layers[0]
    modules = {"linear1": layer.linear1, "linear2": layer.linear2, "value_proj": layer.self_attn.value_proj,
               "output_proj": layer.self_attn.output_proj, "sampling_offsets": layer.self_attn.sampling_offsets,
               "attention_weights": layer.self_attn.attention_weights}
    for name, module in modules.items():
        module.register_forward_pre_hook(
            lambda _m, _i, name=name: seen.__setitem__(name, torch.backends.mkldnn.matmul.fp32_precision))
    layer.linear1.register_forward_hook(lambda _m, _i, out: seen.__setitem__("linear1_out", out.dtype))
    fpn_conv = model.sem_seg_head.pixel_decoder.layer_1
    fpn_conv.register_forward_hook(lambda _m, inputs, output: seen.__setitem__(
        "fpn", (output.dtype, inputs[0].is_contiguous(memory_format=torch.channels_last))))
    return seen


def test_cpu_bfloat16_mode_rounds_only_the_chosen_gemm_inputs_in_eval():
    """`MODEL.ENCODER.CPU_BFLOAT16` (on by default): in eval under CPU bfloat16 autocast the encoder's first FFN
    linear runs in bfloat16, the second FFN linear and the value/output projections with bfloat16 inputs, the FPN
    convs in bfloat16 channels-last, the sampling offsets and attention weights in plain float32; in training,
    without autocast or with the option off nothing changes."""
    model = _model().eval()
    pixel_decoder = model.sem_seg_head.pixel_decoder
    assert pixel_decoder.cpu_bfloat16
    seen = _gemm_precisions(model)
    inputs = [{"image": synthetic_image(96, 128, seed=3)}]
    before = torch.backends.mkldnn.matmul.fp32_precision

    def semantic(cpu_bfloat16, autocast):
        pixel_decoder.cpu_bfloat16 = cpu_bfloat16
        seen.clear()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            return model(inputs, vocabulary=VOCAB, task="semantic")[0]["sem_seg"]

    fast = semantic(True, autocast=True)
    assert {name: seen[name] for name in ("linear2", "value_proj", "output_proj")} == dict.fromkeys(
        ("linear2", "value_proj", "output_proj"), "bf16")
    assert seen["linear1_out"] == torch.bfloat16
    assert seen["sampling_offsets"] == seen["attention_weights"] == before
    assert seen["fpn"] == (torch.bfloat16, True)
    assert torch.backends.mkldnn.matmul.fp32_precision == before  # restored

    reference_parts = semantic(False, autocast=True)
    assert set(seen[name] for name in ("linear1", "value_proj", "output_proj")) == {before}
    assert seen["linear1_out"] == torch.float32 and seen["fpn"] == (torch.float32, False)
    assert not torch.equal(fast, reference_parts)
    assert (fast - reference_parts).abs().max() < 0.05 * reference_parts.abs().max()

    assert torch.equal(semantic(True, autocast=False), semantic(False, autocast=False))  # float32 untouched
    assert seen["linear1"] == before and seen["linear1_out"] == torch.float32 and seen["fpn"] == (torch.float32, False)

    model.train()
    pixel_decoder.cpu_bfloat16 = True
    seen.clear()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pixel_decoder.forward_features(model.backbone(torch.randn(1, 3, 64, 64)))
    assert seen["linear1"] == before and seen["linear1_out"] == torch.float32 and seen["fpn"] == (torch.float32, False)


def test_bf16_gemm_inputs_rounds_inputs_accumulates_in_float32_and_restores_the_setting():
    generator = torch.Generator().manual_seed(0)
    a, b = torch.rand(64, 512, generator=generator), torch.rand(512, 96, generator=generator)
    exact = a.double() @ b.double()
    rounded_inputs = a.bfloat16().double() @ b.bfloat16().double()
    before = torch.backends.mkldnn.matmul.fp32_precision
    with bf16_gemm_inputs("cpu"):
        assert torch.backends.mkldnn.matmul.fp32_precision == "bf16"
        product = a @ b
    assert torch.backends.mkldnn.matmul.fp32_precision == before
    assert product.dtype == torch.float32
    # The setting lets oneDNN round the inputs to bfloat16; where it uses that (Intel CPUs with AVX512-BF16/AMX) the
    # product is the float32 sum of rounded inputs, ~1e-7 relative from those (a bfloat16 output would be ~2⁻⁸
    # off); where it does not (no bfloat16 support; the AMD EPYC tested keeps float32 math here) it is float32.
    from_rounded_inputs = ((product.double() - rounded_inputs).abs() / exact).max()
    from_exact = ((product.double() - exact).abs() / exact).max()
    assert min(from_rounded_inputs, from_exact) < 1e-5, (from_rounded_inputs, from_exact)
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        assert from_exact < 1e-5
    with bf16_gemm_inputs("cpu", enabled=False), bf16_gemm_inputs("cuda"):
        assert torch.backends.mkldnn.matmul.fp32_precision == before
        assert torch.equal(a @ b, a @ b) and ((a @ b).double() - exact).abs().max() < 1e-3
    try:
        with bf16_gemm_inputs("cpu"):
            raise RuntimeError("inside")
    except RuntimeError:
        pass
    assert torch.backends.mkldnn.matmul.fp32_precision == before
