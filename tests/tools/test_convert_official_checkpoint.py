"""Official checkpoint conversion (docs/official_behaviours.md §12): layouts, documented drops, validation, and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from detectron2.modeling import build_model
from refdata_utils import official_keys

import openseed.modeling  # noqa: F401  (registers the meta-architecture)
from openseed.checkpoint import (
    CheckpointConversionError,
    convert_official_state_dict,
    load_checkpoint,
    load_official_weights,
    save_checkpoint,
    shared_tensor_groups,
)
from openseed.config import setup_cfg
from tests.tool_loader import load_tool

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_CONFIG = REPO_ROOT / "configs/tiny/tiny_decoupled.yaml"
TEXT_POS = "sem_seg_head.predictor.lang_encoder.lang_encoder.positional_embedding"




# --------------------------------------------------------------------------------------------- conversion rules
MODEL_SHAPES = {
    "backbone.layers.0.blocks.0.attn.qkv.weight": (6, 2),
    "sem_seg_head.predictor.decoder_norm.weight": (2,),
    "sem_seg_head.predictor.decoder.norm.weight": (2,),
    TEXT_POS: (77, 4),
}
ALIASES = [["sem_seg_head.predictor.decoder_norm.weight", "sem_seg_head.predictor.decoder.norm.weight"]]


def official_like(context_length=77):
    norm = torch.randn(2)
    return {
        "backbone.layers.0.blocks.0.attn.qkv.weight": torch.randn(6, 2),
        "backbone.layers.0.blocks.0.attn.relative_position_index": torch.zeros(49, 49, dtype=torch.int64),
        "sem_seg_head.predictor.decoder_norm.weight": norm,
        "sem_seg_head.predictor.decoder.norm.weight": norm,
        TEXT_POS: torch.randn(context_length, 4),
        "criterion_coco.empty_weight": torch.ones(134),
        "criterion_o365.empty_weight": torch.ones(366),
    }


def test_plain_layout_drops_documented_extras():
    state = official_like()
    converted, report = convert_official_state_dict(state, MODEL_SHAPES, alias_groups=ALIASES)
    assert converted.keys() == MODEL_SHAPES.keys()
    assert all(converted[k] is state[k] for k in MODEL_SHAPES)
    assert report.layout == "plain" and report.converted == 4 and report.aliases_checked == 1
    assert sorted(report.dropped) == [
        "backbone.layers.0.blocks.0.attn.relative_position_index", "criterion_coco.empty_weight",
        "criterion_o365.empty_weight",
    ]
    assert "criterion_coco.empty_weight" in report.summary()


def test_relative_position_index_is_kept_when_the_model_stores_it():
    shapes = dict(MODEL_SHAPES, **{"backbone.layers.0.blocks.0.attn.relative_position_index": (49, 49)})
    converted, report = convert_official_state_dict(official_like(), shapes)
    assert converted["backbone.layers.0.blocks.0.attn.relative_position_index"].dtype == torch.int64
    assert "backbone.layers.0.blocks.0.attn.relative_position_index" not in report.dropped


def test_trainer_layout_with_model_prefix():
    state = official_like()
    trainer = {"model": {f"model.{k}": v for k, v in state.items()}, "iteration": 5000, "trainer": {"x": 1}}
    converted, report = convert_official_state_dict(trainer, MODEL_SHAPES)
    assert report.layout == "trainer" and report.ignored_entries == ["iteration", "trainer"]
    assert all(converted[k] is state[k] for k in MODEL_SHAPES)


def test_missing_and_unexpected_keys_are_named():
    state = official_like()
    del state["backbone.layers.0.blocks.0.attn.qkv.weight"]
    state["sem_seg_head.predictor.not_ours.weight"] = torch.ones(1)
    with pytest.raises(CheckpointConversionError) as info:
        convert_official_state_dict(state, MODEL_SHAPES)
    message = str(info.value)
    assert "1 model keys missing from the checkpoint: backbone.layers.0.blocks.0.attn.qkv.weight" in message
    assert "1 unexpected checkpoint keys: sem_seg_head.predictor.not_ours.weight" in message
    assert info.value.report.missing == ["backbone.layers.0.blocks.0.attn.qkv.weight"]


def test_shape_mismatch_is_refused_naming_keys_and_context_length():
    with pytest.raises(CheckpointConversionError) as info:
        convert_official_state_dict(official_like(context_length=18), MODEL_SHAPES)
    message = str(info.value)
    assert f"{TEXT_POS} [18, 4] vs model [77, 4]" in message
    assert "MODEL.TEXT.CONTEXT_LENGTH 18" in message


def test_allow_mismatch_leaves_the_key_out_and_reports_it():
    converted, report = convert_official_state_dict(official_like(context_length=18), MODEL_SHAPES,
                                                    allow_mismatch=True)
    assert TEXT_POS not in converted and report.shape_mismatches == {TEXT_POS: ((18, 4), (77, 4))}
    assert "left at the model's initialisation" in report.summary()


def test_aliases_with_different_values_are_refused():
    state = official_like()
    state["sem_seg_head.predictor.decoder.norm.weight"] = torch.randn(2)
    with pytest.raises(CheckpointConversionError, match="one shared tensor hold different values.*decoder.norm"):
        convert_official_state_dict(state, MODEL_SHAPES, alias_groups=ALIASES)


def test_non_tensor_entries_are_refused():
    with pytest.raises(CheckpointConversionError, match="not tensors: step"):
        convert_official_state_dict(dict(official_like(), step=3), MODEL_SHAPES)


class TiedModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.decoder_norm = torch.nn.LayerNorm(2)
        self.decoder = torch.nn.Module()
        self.decoder.norm = self.decoder_norm
        self.register_buffer("pixel_mean", torch.zeros(3), persistent=False)


def test_load_official_weights_fills_tied_modules_strictly():
    model = TiedModel()
    assert shared_tensor_groups(model.state_dict()) == [
        ["decoder_norm.weight", "decoder.norm.weight"], ["decoder_norm.bias", "decoder.norm.bias"],
    ]
    weight, bias = torch.randn(2), torch.randn(2)
    checkpoint = {"model": {"model.decoder_norm.weight": weight, "model.decoder_norm.bias": bias,
                            "model.decoder.norm.weight": weight, "model.decoder.norm.bias": bias,
                            "model.criterion.empty_weight": torch.ones(3)}}
    report = load_official_weights(model, checkpoint)
    assert torch.equal(model.decoder.norm.weight, weight) and torch.equal(model.decoder_norm.bias, bias)
    assert report.aliases_checked == 2 and list(report.dropped) == ["criterion.empty_weight"]


# --------------------------------------------------------------------------------------------- command line
@pytest.fixture(scope="module")
def tiny_official_checkpoint():
    """The tiny model's weights in the official trainer layout (prefix + criterion buffers), and the model."""
    model = build_model(setup_cfg(str(TINY_CONFIG), ["MODEL.DEVICE", "cpu"]))
    generator = torch.Generator().manual_seed(0)
    state = {}
    for key, tensor in model.state_dict().items():
        state[key] = tensor if not tensor.is_floating_point() else torch.randn(tensor.shape, generator=generator)
    for group in shared_tensor_groups(model.state_dict()):
        for key in group[1:]:
            state[key] = state[group[0]]
    state["criterion_coco.empty_weight"] = torch.ones(134)
    return {"model": {f"model.{k}": v for k, v in state.items()}, "iteration": 10}, state


@pytest.mark.parametrize("output_name, extra", [("converted.pth", []), ("converted.safetensors", ["--safetensors"])])
def test_tool_converts_and_writes_a_strictly_loadable_file(tmp_path, capsys, tiny_official_checkpoint, output_name,
                                                          extra):
    checkpoint, expected = tiny_official_checkpoint
    source, output = tmp_path / "official.pth", tmp_path / output_name
    save_checkpoint(checkpoint, source)
    assert load_tool("convert_official_checkpoint").main([str(source), str(output), "--config-file", str(TINY_CONFIG), *extra]) == 0
    assert "from a trainer checkpoint" in capsys.readouterr().out
    loaded = load_checkpoint(output)
    state = loaded if output_name.endswith(".safetensors") else loaded["model"]
    model = build_model(setup_cfg(str(TINY_CONFIG), ["MODEL.DEVICE", "cpu"]))
    model.load_state_dict(state, strict=True)
    assert state.keys() == {k for k in expected if not k.startswith("criterion")}
    assert all(torch.equal(state[k], expected[k]) for k in state)


def test_tool_refuses_a_mismatching_checkpoint_naming_keys(tmp_path, capsys, tiny_official_checkpoint):
    checkpoint, _ = tiny_official_checkpoint
    model_state = dict(checkpoint["model"])
    model_state[f"model.{TEXT_POS}"] = torch.zeros(77, 64)
    source, output = tmp_path / "official.pth", tmp_path / "converted.pth"
    save_checkpoint({"model": model_state}, source)
    assert load_tool("convert_official_checkpoint").main([str(source), str(output), "--config-file", str(TINY_CONFIG)]) == 1
    error = capsys.readouterr().err
    assert f"{TEXT_POS} [77, 64] vs model [16, 64]" in error and str(source) in error
    assert not output.exists()
    assert load_tool("convert_official_checkpoint").main([str(source), str(output), "--config-file", str(TINY_CONFIG), "--allow-mismatch"]) == 0
    assert output.exists()


def test_tool_refuses_safetensors_flag_with_other_suffix(tmp_path, capsys):
    assert load_tool("convert_official_checkpoint").main(["in.pth", str(tmp_path / "out.pth"), "--config-file", str(TINY_CONFIG),
                             "--safetensors"]) == 2
    assert "--safetensors needs an OUTPUT ending in .safetensors" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------- official layouts
def official_layout_state_dict(refdata, decoupled: bool) -> dict[str, torch.Tensor]:
    """Random tensors with exactly the keys, shapes and dtypes of an official layout, aliases tied as officially."""
    ties = {e["key"]: e["tie_to"] for e in json.loads((refdata / "parity_regen_spec.json").read_text())["entries"]
            if e["kind"] == "tied"}
    state = {}
    for key, shape, dtype in official_keys(refdata, decoupled=decoupled):
        if key in ties:
            state[key] = state[ties[key]]
        elif dtype == "int64":
            state[key] = torch.randint(0, 100, shape, dtype=torch.int64)
        else:
            state[key] = torch.randn(shape)
    return state


@pytest.mark.slow
@pytest.mark.parametrize(
    "decoupled, config",
    [(True, "configs/openseed/swint_decoupled_coco_o365.yaml"), (False, "configs/openseed/swint_coco_released.yaml")],
)
def test_official_layouts_load_into_our_model(refdata, decoupled, config):
    model = build_model(setup_cfg(str(REPO_ROOT / config), ["MODEL.DEVICE", "cpu"]))
    state = official_layout_state_dict(refdata, decoupled)
    for checkpoint in (state, {"model": {f"model.{k}": v for k, v in state.items()}}):
        report = load_official_weights(model, checkpoint)
        assert not report.missing and not report.unexpected and not report.shape_mismatches
        criterion_keys = [k for k in state if k.startswith("criterion")]
        assert sorted(report.dropped) == sorted(criterion_keys)
        assert report.aliases_checked >= 8
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in loaded)
    assert loaded.keys() == {k for k in state if not k.startswith("criterion")}
