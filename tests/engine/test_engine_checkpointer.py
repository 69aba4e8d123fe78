"""Strict, weights_only checkpoint loading; text-encoder-only initial weights; RNG states in checkpoints."""

import random

import numpy as np
import pytest
import torch
from torch import nn

from openseed.checkpoint import CheckpointMismatchError, load_backbone_weights
from openseed.checkpoint.io import load_checkpoint, save_checkpoint
from openseed.config import get_cfg
from openseed.engine.checkpointer import TrainingCheckpointer
from openseed.engine.rng_state import capture_rng_state, preserved_rng_state, restore_rng_state
from openseed.modeling.backbone import D2SwinTransformer

CPU = torch.device("cpu")


class TextEncoder(nn.Module):
    def __init__(self, context=7):
        super().__init__()
        self.lang_encoder = nn.Module()
        self.lang_encoder.positional_embedding = nn.Parameter(torch.randn(context, 6))
        self.lang_encoder.ln_final = nn.LayerNorm(6)
        self.lang_proj = nn.Parameter(torch.randn(6, 4))
        self.logit_scale = nn.Parameter(torch.tensor(1.5))


class TinyNet(nn.Module):
    """backbone + sem_seg_head.predictor.lang_encoder, like OpenSeeD's attribute layout."""

    def __init__(self, width=4, context=7):
        super().__init__()
        self.backbone = nn.Linear(3, width)
        self.sem_seg_head = nn.Module()
        self.sem_seg_head.predictor = nn.Module()
        self.sem_seg_head.predictor.class_embed = nn.Parameter(torch.randn(width, 4))
        self.sem_seg_head.predictor.lang_encoder = TextEncoder(context)


def test_round_trip_is_exact(tmp_path):
    source, target = TinyNet(), TinyNet()
    TrainingCheckpointer(source, str(tmp_path)).save("model_0000004", iteration=4)
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000004.pth"
    extra = TrainingCheckpointer(target, str(tmp_path)).resume_or_load("", resume=True)
    assert extra["iteration"] == 4
    for (name, a), b in zip(source.state_dict().items(), target.state_dict().values()):
        assert torch.equal(a, b), name
    assert not list(tmp_path.glob("*.tmp"))


def test_wrong_architecture_names_the_parameters(tmp_path):
    save_checkpoint({"model": TinyNet(width=5).state_dict() | {"extra_head.weight": torch.zeros(2)}}, tmp_path / "w.pth")
    with pytest.raises(CheckpointMismatchError) as error:
        TrainingCheckpointer(TinyNet(width=4)).load(str(tmp_path / "w.pth"), checkpointables=[])
    message = str(error.value)
    assert "backbone.weight (checkpoint (5, 3), model (4, 3))" in message
    assert "sem_seg_head.predictor.class_embed" in message
    assert "extra_head.weight" in message and "w.pth" in message


def test_missing_parameters_are_named(tmp_path):
    state = TinyNet().state_dict()
    del state["sem_seg_head.predictor.lang_encoder.logit_scale"]
    save_checkpoint(state, tmp_path / "partial.pth")  # a plain state dict (no "model" entry) also loads
    with pytest.raises(CheckpointMismatchError, match="missing.*lang_encoder.logit_scale"):
        TrainingCheckpointer(TinyNet()).load(str(tmp_path / "partial.pth"), checkpointables=[])


def test_missing_file_and_unsafe_pickle_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        TrainingCheckpointer(TinyNet()).load(str(tmp_path / "nope.pth"))
    torch.save({"model": TinyNet().state_dict(), "hook": TinyNet}, tmp_path / "unsafe.pth")
    with pytest.raises(RuntimeError, match="refused"):
        TrainingCheckpointer(TinyNet()).load(str(tmp_path / "unsafe.pth"))


class SwinDetector(nn.Module):
    """A small Swin backbone (window `window`) beside a head that backbone initialisation must not touch."""

    def __init__(self, window: int = 7):
        super().__init__()
        cfg = get_cfg()
        cfg.MODEL.SWIN.EMBED_DIM, cfg.MODEL.SWIN.DEPTHS, cfg.MODEL.SWIN.NUM_HEADS = 16, [2, 2, 2, 2], [1, 1, 2, 2]
        cfg.MODEL.SWIN.WINDOW_SIZE = window
        self.backbone = D2SwinTransformer(cfg)
        self.head = nn.Linear(4, 4)


def imagenet_checkpoint(source: SwinDetector) -> dict:
    """The official Swin classification release layout: no output norms; final norm, classifier and attn masks."""
    state = {k: v for k, v in source.backbone.state_dict().items() if not k.startswith(("norm0", "norm1", "norm2",
                                                                                         "norm3"))}
    state.update({"norm.weight": torch.ones(128), "norm.bias": torch.zeros(128), "head.weight": torch.zeros(1000, 128),
                  "head.bias": torch.zeros(1000), "layers.0.blocks.1.attn_mask": torch.zeros(4, 49, 49)})
    return {"model": state}


def test_backbone_initialisation_from_an_imagenet_checkpoint(tmp_path):
    torch.manual_seed(0)
    source, model = SwinDetector(), SwinDetector()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    save_checkpoint(imagenet_checkpoint(source), tmp_path / "swin_imagenet.pth")
    load_backbone_weights(model, str(tmp_path / "swin_imagenet.pth"))
    loaded = 0
    for name, value in model.backbone.state_dict().items():
        if name.startswith(("norm0", "norm1", "norm2", "norm3")):
            assert torch.equal(value, before[f"backbone.{name}"]), name  # detection-only: own initialisation
        else:
            assert torch.equal(value, source.backbone.state_dict()[name]), name
            loaded += not torch.equal(value, before[f"backbone.{name}"])
    assert loaded >= 40  # random weights differ; norms, zero biases and index buffers are equal by construction
    assert torch.equal(model.head.weight, before["head.weight"])

    save_checkpoint({"model": source.state_dict()}, tmp_path / "detector.pth")  # a whole detector: `backbone.` keys
    load_backbone_weights(model, str(tmp_path / "detector.pth"))
    assert torch.equal(model.backbone.norm0.weight, source.backbone.norm0.weight)


def test_backbone_initialisation_refuses_other_windows_and_missing_tensors(tmp_path):
    model = SwinDetector()
    save_checkpoint(imagenet_checkpoint(SwinDetector(window=12)), tmp_path / "window12.pth")
    with pytest.raises(CheckpointMismatchError, match=r"relative_position_bias_table \(checkpoint \(529, 1\)"):
        load_backbone_weights(model, str(tmp_path / "window12.pth"))
    checkpoint = imagenet_checkpoint(SwinDetector())
    del checkpoint["model"]["patch_embed.proj.weight"]
    save_checkpoint(checkpoint, tmp_path / "incomplete.pth")
    with pytest.raises(CheckpointMismatchError, match="missing from the checkpoint: patch_embed.proj.weight"):
        load_backbone_weights(model, str(tmp_path / "incomplete.pth"))


def _draw():
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)], np.random.randn()


def test_rng_state_survives_a_weights_only_checkpoint(tmp_path):
    np.random.randn()  # leaves a cached Gaussian in NumPy's state
    save_checkpoint({"rng": capture_rng_state(CPU)}, tmp_path / "rng.pth")
    expected = _draw()
    _draw()
    restore_rng_state(load_checkpoint(tmp_path / "rng.pth")["rng"], CPU)
    assert _draw() == expected


def test_preserved_rng_state_hides_draws():
    state = capture_rng_state(CPU)
    expected = _draw()
    restore_rng_state(state, CPU)
    with preserved_rng_state(CPU):
        _draw()
    assert _draw() == expected
