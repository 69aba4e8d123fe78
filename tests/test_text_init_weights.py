"""`MODEL.TEXT.INIT_WEIGHTS`: building a model loads nothing; the initialiser loads the whole text encoder once,
strict on every shape except the positional embedding, which is linearly resampled to the context length."""

from pathlib import Path

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model

from openseed.benchmarks.inputs import build_benchmark_model
from openseed.checkpoint import CheckpointMismatchError, load_model_weights, save_checkpoint
from openseed.config import setup_cfg

TINY = str(Path(__file__).resolve().parents[1] / "configs" / "tiny" / "tiny_decoupled.yaml")
TEXT = "sem_seg_head.predictor.lang_encoder."
POSITIONS = "lang_encoder.positional_embedding"  # relative to the text encoder; the tiny config has 16 × 64


def tiny_model(opts=(), seed=0):
    cfg = setup_cfg(TINY, list(opts))
    torch.manual_seed(seed)
    return cfg, build_model(cfg)


def text_state(model) -> dict:
    return {k.removeprefix(TEXT): v.detach().clone() for k, v in model.state_dict().items() if k.startswith(TEXT)}


def linear_resampling(table: np.ndarray, length: int) -> np.ndarray:
    """Row i of the result samples `table` at x = (i + 0.5)·L/length − 0.5, clamped to [0, L−1], linearly."""
    rows = []
    for i in range(length):
        x = min(max((i + 0.5) * len(table) / length - 0.5, 0.0), len(table) - 1.0)
        low = int(np.floor(x))
        high, w = min(low + 1, len(table) - 1), x - low
        rows.append((1 - w) * table[low] + w * table[high])
    return np.stack(rows)


def test_text_init_weights_one_rule(tmp_path):
    _, donor = tiny_model(["MODEL.TEXT.CONTEXT_LENGTH", "8"], seed=1)
    donor_text = text_state(donor)
    save_checkpoint({"model": donor.state_dict()}, tmp_path / "full_context8.pth")  # full-model keys, 8 positions
    opts = ["MODEL.TEXT.INIT_WEIGHTS", str(tmp_path / "full_context8.pth")]

    cfg, model = tiny_model(opts)
    _, plain = tiny_model()
    for key, value in text_state(plain).items():  # building loaded nothing
        assert torch.equal(text_state(model)[key], value), key
    backbone_before = model.backbone.state_dict()
    backbone_before = {k: v.clone() for k, v in backbone_before.items()}

    load_model_weights(model, cfg)  # inference path: MODEL.WEIGHTS is empty, so the initial text weights stay
    loaded = text_state(model)
    assert loaded.keys() == donor_text.keys()
    for key, value in donor_text.items():
        if key != POSITIONS:
            assert torch.equal(loaded[key], value), key
    assert loaded[POSITIONS].shape == (16, 64)
    expected = linear_resampling(donor_text[POSITIONS].numpy().astype(np.float64), 16)
    np.testing.assert_allclose(loaded[POSITIONS].numpy(), expected, rtol=1e-5, atol=1e-6)
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, backbone_before[key]), key
    _, benchmarked = build_benchmark_model(TINY, opts)  # the benchmarks' path gets the same initial weights
    for key, value in loaded.items():
        assert torch.equal(text_state(benchmarked)[key], value), key

    # keys relative to the text encoder, same context length: loaded as they are
    save_checkpoint(text_state(plain), tmp_path / "text_only.pth")
    cfg, model = tiny_model(["MODEL.TEXT.INIT_WEIGHTS", str(tmp_path / "text_only.pth")], seed=2)
    load_model_weights(model, cfg)
    for key, value in text_state(plain).items():
        assert torch.equal(text_state(model)[key], value), key

    # everything else is strict: another width, or a missing tensor, is refused naming the key and the file
    wide = text_state(plain) | {POSITIONS: torch.zeros(16, 32)}
    save_checkpoint(wide, tmp_path / "wide.pth")
    cfg, model = tiny_model(["MODEL.TEXT.INIT_WEIGHTS", str(tmp_path / "wide.pth")])
    with pytest.raises(CheckpointMismatchError, match=r"wide\.pth.*\n.*positional_embedding \(checkpoint \(16, 32\), "
                                                      r"model \(16, 64\)\)"):
        load_model_weights(model, cfg)
    partial = {k: v for k, v in text_state(plain).items() if k != "lang_proj"}
    save_checkpoint(partial, tmp_path / "partial.pth")
    cfg, model = tiny_model(["MODEL.TEXT.INIT_WEIGHTS", str(tmp_path / "partial.pth")])
    with pytest.raises(CheckpointMismatchError, match="missing from the checkpoint: lang_proj"):
        load_model_weights(model, cfg)
