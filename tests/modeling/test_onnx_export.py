"""ONNX export (`openseed.export`): raw outputs of ONNX Runtime equal PyTorch float32 within 1e-4 at an image size
other than the traced one, and the post-processed results equal the model's; the Predictor's onnxruntime backend.

The tiny-config case always runs; the parity-fixture case (decoupled Swin-T with the regenerated official weights)
needs the reference data.
"""

import os

import pytest
import torch
from detectron2.modeling import build_model

from openseed.benchmarks.inputs import synthetic_image
from openseed.config import setup_cfg
from openseed.export import OnnxRuntimeModel, compare_with_pytorch, export_onnx
from openseed.modeling.postprocessing import PostprocessSettings
from openseed.predictor import Predictor
from openseed.vocabulary import Vocabulary
from tests.refdata_utils import parity_image, parity_model

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
pytestmark = pytest.mark.slow

TINY = "configs/tiny/tiny_decoupled.yaml"
VOCAB = Vocabulary.from_names(["cat", "dog", "car", "bus", "cup"], ["sky", "grass"])
TOLERANCE = 1e-4
TASKS = ("panoptic", "instance", "semantic")


def assert_results_equal(got: dict, expected: dict) -> None:
    assert set(got) == set(expected)
    if "sem_seg" in expected:
        torch.testing.assert_close(got["sem_seg"], expected["sem_seg"], atol=TOLERANCE, rtol=0)
        assert torch.equal(got["sem_seg"].argmax(0), expected["sem_seg"].argmax(0))
    if "panoptic_seg" in expected:
        assert torch.equal(got["panoptic_seg"][0], expected["panoptic_seg"][0])
        assert got["panoptic_seg"][1] == expected["panoptic_seg"][1]
    if "instances" in expected:
        ours, theirs = got["instances"], expected["instances"]
        assert torch.equal(ours.pred_classes, theirs.pred_classes)
        torch.testing.assert_close(ours.scores, theirs.scores, atol=TOLERANCE, rtol=0)
        torch.testing.assert_close(ours.pred_boxes.tensor, theirs.pred_boxes.tensor, atol=1e-2, rtol=0)
        if theirs.has("pred_masks"):
            assert torch.equal(ours.pred_masks, theirs.pred_masks)


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    torch.manual_seed(0)
    cfg = setup_cfg(TINY, [])
    model = build_model(cfg).eval()
    path = export_onnx(model, VOCAB, tmp_path_factory.mktemp("onnx") / "tiny.onnx", sample_size=(128, 160))
    return cfg, model, path


def test_tiny_raw_outputs_match_pytorch_at_another_size(tiny_export):
    _, model, path = tiny_export
    # padded to 96×192, 224×160 and 320×352, none the traced 128×160 (426 encoder tokens); 320×352 has 2340, which
    # the eager encoder layers run in three chunks
    for height, width in ((96, 192), (200, 130), (320, 352)):
        errors = compare_with_pytorch(path, model, synthetic_image(height, width, seed=1), threads=1)
        assert set(errors) == {"pred_logits", "pred_masks", "pred_boxes"}
        assert max(errors.values()) <= TOLERANCE, errors


def test_default_kernel_exports_as_grid_sample_and_embedding_bag_exports_too(tiny_export, tmp_path):
    """The default kernel "auto" exports as the reference one (ONNX GridSample: at 800×1216 the demo network ran in
    0.33 s against 83 s for the embedding bag's Gather); the embedding bag, asked for by name, still exports and
    matches."""
    cfg, _, path = tiny_export
    torch.manual_seed(0)
    model = build_model(setup_cfg(TINY, ["MODEL.ENCODER.DEFORM_ATTN_IMPL", "embedding_bag"])).eval()
    gather_path = export_onnx(model, VOCAB, tmp_path / "gather.onnx", sample_size=(128, 160))
    encoder_samplings = cfg.MODEL.ENCODER.TRANSFORMER_ENC_LAYERS * cfg.MODEL.ENCODER.TOTAL_NUM_FEATURE_LEVELS
    # one GridSample per level and layer; the decoder's cross-attention has "auto" in both
    assert _count(path, "GridSample") == _count(gather_path, "GridSample") + encoder_samplings
    errors = compare_with_pytorch(gather_path, model, synthetic_image(96, 192, seed=1), threads=1)
    assert max(errors.values()) <= TOLERANCE, errors


def _count(path, op_type: str) -> int:
    """Nodes of `op_type` in the graph of an ONNX file (and in its local functions, if the exporter made any)."""
    model = onnx.load(str(path))
    nodes = [*model.graph.node, *(node for function in model.functions for node in function.node)]
    return sum(node.op_type == op_type for node in nodes)


def test_tiny_postprocessed_results_equal_the_model(tiny_export):
    cfg, model, path = tiny_export
    runtime = OnnxRuntimeModel(path, PostprocessSettings.from_config(cfg), threads=1)
    inputs = [{"image": synthetic_image(100, 140, seed=2), "height": 150, "width": 210}]
    for tasks in (TASKS, ("detection",)):
        with torch.no_grad():
            expected = model(inputs, vocabulary=VOCAB, task=tasks)[0]
        got = runtime(inputs, vocabulary=VOCAB, task=tasks)[0]
        assert_results_equal(got, expected)
    assert len(got["instances"]) > 0


def test_predictor_onnxruntime_backend(tiny_export):
    cfg, _, path = tiny_export
    predictor = Predictor(TINY, backend="onnxruntime", onnx_file=path)
    image = synthetic_image(90, 120, seed=3).permute(1, 2, 0).numpy()
    result = predictor(image, vocabulary=VOCAB, task="semantic")
    runtime = OnnxRuntimeModel(path, PostprocessSettings.from_config(cfg))
    expected = runtime([predictor.model_input(image)], vocabulary=VOCAB, task="semantic")[0]
    assert result["sem_seg"].shape == (len(VOCAB), 90, 120)
    assert torch.equal(result["sem_seg"], expected["sem_seg"])
    with pytest.raises(ValueError, match="fixed vocabulary"):
        predictor(image, vocabulary=["cat", "dog"])
    with pytest.raises(ValueError, match="PyTorch backend"):
        predictor.segment_boxes(image, [[0, 0, 10, 10]])
    with pytest.raises(ValueError, match="onnx_file"):
        Predictor(TINY, backend="onnxruntime")
    with pytest.raises(ValueError, match="backend"):
        Predictor(TINY, backend="tensorrt")


def test_not_an_openseed_export_is_named(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="bad.onnx"):
        OnnxRuntimeModel(bad)
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        OnnxRuntimeModel(tmp_path / "missing.onnx")


@pytest.mark.skipif(os.environ.get("OPENSEED_ONNX_SWIN") != "1",
                    reason="exports the full Swin-T (over 10 minutes on 2 CPU cores); set OPENSEED_ONNX_SWIN=1 to run "
                           "it (the narrow Swin of test_onnx_swin.py checks the backbone's symbolic size by default)")
def test_parity_fixture_raw_and_postprocessed_outputs_match_pytorch(refdata, tmp_path):
    model, vocabulary = parity_model(refdata)
    path = export_onnx(model, vocabulary, tmp_path / "parity.onnx", sample_size=(384, 448))
    image = parity_image(refdata)
    errors = compare_with_pytorch(path, model, image, threads=2)
    print(f"parity fixture, ONNX Runtime vs PyTorch max |Δ|: {errors}")
    assert max(errors.values()) <= TOLERANCE, errors
    inputs = [{"image": image, "height": 512, "width": 512}]
    with torch.no_grad():
        expected = model(inputs, vocabulary=vocabulary, task=TASKS)[0]
    got = OnnxRuntimeModel(path, model.postprocess_settings, threads=2)(inputs, vocabulary=vocabulary, task=TASKS)[0]
    assert_results_equal(got, expected)
