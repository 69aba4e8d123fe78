"""The model under autocast (bfloat16 on CPU here; float16 on CUDA in `tests/engine/test_engine_cuda.py`): the pixel
decoder and the decoder layers run in float32 as in the reference, the rest in half precision, and the results stay
close to the float32 ones for both inference and a joint training step."""

import torch
from detectron2.modeling import build_model

from openseed.benchmarks.inputs import synthetic_image, synthetic_training_sample
from openseed.config import setup_cfg
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
    model = _model().eval()
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
