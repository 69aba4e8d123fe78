"""Fine-tuning modes: what trains, no gradients / optimizer state for frozen parts, adapter files, trainer use."""

from pathlib import Path

import pytest
import torch
from detectron2.modeling import build_model
from torch import nn

from openseed.benchmarks.inputs import synthetic_training_sample
from openseed.checkpoint import (
    CheckpointError,
    load_adapter,
    load_model_weights,
    read_adapter_metadata,
    save_adapter,
    save_checkpoint,
)
from openseed.config import setup_cfg
from openseed.data.registration.synthetic import register_synthetic_datasets
from openseed.data.synthetic import generate_synthetic_datasets
from openseed.engine import OpenSeeDTrainer, build_optimizer
from openseed.engine.finetune import apply_finetune_mode
from openseed.modeling.lora import (
    LANGUAGE_ENCODER_PATH,
    PROJECTION_PATH,
    adapter_target_names,
    attach_projection_linear,
)
from openseed.vocabulary import Vocabulary

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY = str(REPO_ROOT / "configs" / "tiny" / "tiny_decoupled.yaml")
FAST = ["INPUT.IMAGE_SIZE", "64", "MODEL.DECODER.TRAIN_NUM_POINTS", "256"]
TEXT_TRANSFORMER = LANGUAGE_ENCODER_PATH + ".lang_encoder."


def tiny_model(seed=0, opts=()):
    cfg = setup_cfg(TINY, FAST + list(opts))
    torch.manual_seed(seed)
    return cfg, build_model(cfg)


def training_batch(cfg):
    return {"synthetic_panoptic_train": [synthetic_training_sample(64, 12, "seg", 2, seed=1)],
            "synthetic_boxes_train": [synthetic_training_sample(64, 4, "det", 2, seed=2)]}


def trainable_names(model):
    return {name for name, p in model.named_parameters() if p.requires_grad}


def test_each_mode_trains_only_its_parts():
    _, reference = tiny_model()
    all_names = {name for name, _ in reference.named_parameters()}
    _, model = tiny_model()
    assert apply_finetune_mode(model, "full").fraction == 1.0 and trainable_names(model) == all_names

    _, model = tiny_model()
    apply_finetune_mode(model, "frozen-backbone")
    frozen = {n for n in all_names if n.startswith("backbone.") or n.startswith(TEXT_TRANSFORMER)}
    assert frozen and trainable_names(model) == all_names - frozen

    _, model = tiny_model()
    summary = apply_finetune_mode(model, "prompt")
    assert trainable_names(model) == {LANGUAGE_ENCODER_PATH + ".lang_proj", LANGUAGE_ENCODER_PATH + ".logit_scale"}
    assert summary.trainable == 64 * 64 + 1

    _, model = tiny_model()
    summary = apply_finetune_mode(model, "adapter", rank=4, alpha=8)
    trainable = trainable_names(model)
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    # rank 4: A is 4×in, B is out×4 for every adapted linear layer (in/out of its base weight)
    targets = {n.split(".lora_")[0] for n in trainable}
    expected = sum(4 * sum(model.get_submodule(t).get_base_layer().weight.shape) for t in targets)
    assert summary.trainable == expected and summary.total == sum(p.numel() for p in reference.parameters())
    assert summary.fraction < 0.05
    assert PROJECTION_PATH in targets and any(".pixel_decoder." in t for t in targets)
    assert any(".predictor.decoder." in t for t in targets)


def test_targets_skip_attention_out_proj_and_shared_layers():
    _, model = tiny_model()
    attach_projection_linear(model)
    targets = adapter_target_names(model)
    assert not [t for t in targets if t.endswith("self_attn.out_proj")]  # nn.MultiheadAttention reads it directly
    assert not [t for t in targets if "bbox_embed" in t]  # one box MLP shared under several names
    assert not [t for t in targets if t.startswith(TEXT_TRANSFORMER)]
    assert all(isinstance(model.get_submodule(t), nn.Linear) for t in targets)


@pytest.mark.parametrize("mode", ["frozen-backbone", "adapter", "prompt"])
def test_frozen_parameters_get_no_gradient_and_no_optimizer_state(mode):
    cfg, model = tiny_model()
    apply_finetune_mode(model, mode, rank=4, alpha=8)
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = build_optimizer(cfg, model)
    losses = model(training_batch(cfg))
    sum(losses.values()).backward()
    optimizer.step()
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert id(param) in in_optimizer, name
            continue
        assert param.grad is None and id(param) not in in_optimizer and param not in optimizer.state, name
        assert torch.equal(param, before[name]), name
    changed = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, before[n])]
    assert changed


def test_adapter_lr_factor_scales_only_the_adapters_learning_rate():
    factor, text_multiplier = 10.0, 3.0
    cfg, model = tiny_model(opts=["SOLVER.FINETUNE.ADAPTER_LR_FACTOR", str(factor),
                                  "SOLVER.TEXT_ENCODER_MULTIPLIER", str(text_multiplier)])
    apply_finetune_mode(model, "adapter", rank=4, alpha=8)
    model.train()
    optimizer = build_optimizer(cfg, model)
    lr_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    base_lr = cfg.SOLVER.BASE_LR
    for name, param in model.named_parameters():
        if not param.requires_grad:
            assert id(param) not in lr_of, name
            continue
        text = text_multiplier if name.startswith(LANGUAGE_ENCODER_PATH) else 1.0
        assert lr_of[id(param)] == pytest.approx(base_lr * factor * text), name
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    sum(model(training_batch(cfg)).values()).backward()
    optimizer.step()
    for name, param in model.named_parameters():
        if not param.requires_grad:
            assert param not in optimizer.state and torch.equal(param, before[name]), name
    # AdamW's first step moves each element with a gradient by lr·g/(|g| + eps) ≈ lr; the zero-initialised lora_B
    # has no weight decay to add, so its largest step is its learning rate
    checked = []
    for name, param in model.named_parameters():
        if ".lora_B." in name and param.grad is not None and float(param.grad.abs().max()) > 1e-4:
            text = text_multiplier if name.startswith(LANGUAGE_ENCODER_PATH) else 1.0
            step = float((param.detach() - before[name]).abs().max())
            assert step == pytest.approx(base_lr * factor * text, rel=0.01), name
            checked.append(name)
    assert any(n.startswith(PROJECTION_PATH) for n in checked) and any(".decoder." in n for n in checked)


def perturbed_adapter_model(seed=0, convolutions=False):
    cfg, model = tiny_model(seed)
    apply_finetune_mode(model, "adapter", rank=4, alpha=8, convolutions=convolutions)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".lora_B." in name:  # zero-initialised by peft: give the adapters an effect
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    return cfg, model.eval()


def predict(model):
    image = [{"image": torch.randint(0, 255, (3, 96, 128), dtype=torch.uint8,
                                     generator=torch.Generator().manual_seed(0)), "height": 96, "width": 128}]
    vocabulary = Vocabulary.from_names(["orange hexagon", "purple diamond"])
    with torch.no_grad():
        output = model.bind(vocabulary, ("instance",))(image)[0]["instances"]
    return output.scores, output.pred_boxes.tensor


def test_adapter_file_round_trip_merges_into_the_plain_model(tmp_path):
    _, base = tiny_model()
    base_state = {k: v.clone() for k, v in base.state_dict().items()}
    cfg, adapted = perturbed_adapter_model()
    path = tmp_path / "adapter.safetensors"
    size = save_adapter(adapted, path, rank=4, alpha=8)
    save_checkpoint({"model": base_state}, tmp_path / "base.pth")
    assert size == path.stat().st_size and size < 0.05 * (tmp_path / "base.pth").stat().st_size
    metadata = read_adapter_metadata(path)
    assert metadata["rank"] == 4 and metadata["alpha"] == 8.0 and PROJECTION_PATH in metadata["target_modules"]

    merged_cfg = setup_cfg(TINY, FAST + ["MODEL.WEIGHTS", str(tmp_path / "base.pth"),
                                         "MODEL.ADAPTER_WEIGHTS", str(path)])
    merged = build_model(merged_cfg).eval()
    load_model_weights(merged, merged_cfg)
    merged_state = merged.state_dict()
    assert set(merged_state) == set(base_state)  # the pre-trained layout: no adapter modules left
    changed = [k for k in base_state if not torch.equal(base_state[k], merged_state[k])]
    assert LANGUAGE_ENCODER_PATH + ".lang_proj" in changed and all(not k.startswith("backbone.") for k in changed)
    for got, want in zip(predict(merged), predict(adapted)):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)

    unmerged = tiny_model()[1]
    load_adapter(unmerged, path, merge=False)  # to continue training the adapters
    assert trainable_names(unmerged) == trainable_names(adapted)


def test_convolution_adapters_reach_mask_features_and_merge_exactly(tmp_path):
    _, model = tiny_model()
    attach_projection_linear(model)
    linear_only = adapter_target_names(model)
    with_convolutions = adapter_target_names(model, convolutions=True)
    added = [t for t in with_convolutions if t not in linear_only]
    pixel_decoder = "sem_seg_head.pixel_decoder."
    assert pixel_decoder + "mask_features" in added and pixel_decoder + "input_proj.0.0" in added
    assert all(isinstance(model.get_submodule(t), nn.Conv2d) and t.startswith(pixel_decoder) for t in added)
    # the FPN convolutions carry their own norm (and activation): an adapter there could not be merged
    assert not [t for t in added if t.rpartition(".")[2].startswith(("adapter_", "layer_"))]

    _, base = tiny_model()
    save_checkpoint({"model": base.state_dict()}, tmp_path / "base.pth")
    _, adapted = perturbed_adapter_model(convolutions=True)
    path = tmp_path / "adapter.safetensors"
    save_adapter(adapted, path, rank=4, alpha=8)
    assert set(added) <= set(read_adapter_metadata(path)["target_modules"])
    # the file's layers decide: a config without SOLVER.FINETUNE.ADAPTER_CONV loads it
    merged_cfg = setup_cfg(TINY, FAST + ["MODEL.WEIGHTS", str(tmp_path / "base.pth"),
                                         "MODEL.ADAPTER_WEIGHTS", str(path)])
    merged = build_model(merged_cfg).eval()
    load_model_weights(merged, merged_cfg)
    assert not torch.equal(merged.state_dict()[pixel_decoder + "mask_features.weight"],
                           base.state_dict()[pixel_decoder + "mask_features.weight"])
    for got, want in zip(predict(merged), predict(adapted)):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_adapter_refuses_other_base_weights_and_foreign_files(tmp_path):
    _, adapted = perturbed_adapter_model(seed=0)
    path = tmp_path / "adapter.safetensors"
    save_adapter(adapted, path, rank=4, alpha=8)
    other = tiny_model(seed=1)[1]
    with pytest.raises(CheckpointError, match="other base weights"):
        load_adapter(other, path)
    plain = tmp_path / "plain.safetensors"
    save_checkpoint({"x": torch.zeros(2)}, plain)
    with pytest.raises(CheckpointError, match="not an openseed adapter file"):
        load_adapter(tiny_model()[1], plain)
    with pytest.raises(CheckpointError, match="not found"):
        load_adapter(tiny_model()[1], tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="no adapters"):
        save_adapter(tiny_model()[1], tmp_path / "none.safetensors", rank=4, alpha=8)
    with pytest.raises(ValueError, match="SOLVER.FINETUNE.MODE"):
        apply_finetune_mode(tiny_model()[1], "lora")


def test_trainer_adapter_mode_keeps_the_pretrained_weights(tmp_path):
    root = tmp_path / "synthetic"
    generate_synthetic_datasets(str(root), seed=0, num_train=4, num_val=2)
    register_synthetic_datasets(str(root), prefix="ftsyn")
    _, base = tiny_model()
    base_state = {k: v.clone() for k, v in base.state_dict().items()}
    save_checkpoint({"model": base_state}, tmp_path / "base.pth")
    cfg = setup_cfg(TINY, FAST + [
        "DATASETS.TRAIN", "('ftsyn_panoptic_train', 'ftsyn_boxes_train')", "DATALOADER.TRAIN_IMS_PER_GPU", "(1, 1)",
        "DATASETS.TEST", "()", "SOLVER.MAX_ITER", "3", "SOLVER.CHECKPOINT_PERIOD", "100", "SOLVER.BASE_LR", "0.01",
        "MODEL.WEIGHTS", str(tmp_path / "base.pth"), "SOLVER.FINETUNE.MODE", "adapter",
        "SOLVER.FINETUNE.ADAPTER_RANK", "2", "OUTPUT_DIR", str(tmp_path / "out")])
    trainer = OpenSeeDTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    model = trainer.model_without_ddp
    lora_b = [p for n, p in model.named_parameters() if ".lora_B." in n]
    assert lora_b and any(float(p.detach().abs().max()) > 0 for p in lora_b)  # the adapters trained
    state = {k.replace(".base_layer.", "."): v for k, v in model.state_dict().items() if ".lora_" not in k}
    state.pop(PROJECTION_PATH + ".weight")
    assert set(state) == set(base_state)
    assert all(torch.equal(state[k], base_state[k]) for k in base_state)  # every pre-trained tensor unchanged


def test_benchmark_train_case_reports_trainable_parameters_and_optimizer_state():
    from openseed.benchmarks.train import format_train_rows, train_case

    rows = []
    for mode in ("full", "adapter"):
        row = train_case(config_file=TINY, opts=FAST, weights="", seed=0, size=64, datasets=(), images=1,
                         instances=2, checkpoint=(), runs=1, warmup=0, finetune_mode=mode)
        rows.append(dict(row, peak_rss_mb=900.0, threads=1, malloc="tuned"))
    full, adapter = rows
    assert full["trainable"] == full["total_params"] == adapter["total_params"]
    assert 0 < adapter["trainable"] < 0.05 * full["trainable"]
    # AdamW keeps two float32 moments (+ a step counter) per trainable parameter, none for frozen ones
    assert full["optimizer_state_mb"] * 2**20 >= 8 * full["trainable"]
    assert adapter["optimizer_state_mb"] * 2**20 < 9 * adapter["trainable"] + 4096
    table = format_train_rows(rows)
    assert "| adapter" in table and f"{adapter['trainable']:,} / {adapter['total_params']:,}" in table
