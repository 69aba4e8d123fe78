"""Optimizer construction (docs/official_behaviours.md §11.1): per-parameter LR multipliers and weight-decay rules, AdamW, and
full-model gradient-norm clipping.

`param_rules(model, ...)` decides, for every trainable parameter (shared parameters once, under their first
name), its LR multiplier and weight decay; `build_optimizer(cfg, model)` groups parameters with equal
hyper-parameters into one optimizer param group each. Clipping is not hidden inside the optimizer: the trainer
calls `clip_full_model_gradients` after AMP unscaling (docs/official_behaviours.md §11.1 [DESIGN]).

Clean rules (default): LR × `SOLVER.BACKBONE_MULTIPLIER` for names containing "backbone", × `SOLVER.
TEXT_ENCODER_MULTIPLIER` for names containing "lang_encoder", × `SOLVER.FINETUNE.ADAPTER_LR_FACTOR` for low-rank
adapter parameters (names containing ".lora_", `SOLVER.FINETUNE.MODE` "adapter"); no weight decay for normalisation
layers (every LayerNorm variant, incl. the text encoder's), `nn.Embedding`, position tables and learned queries
(`NO_DECAY_NAMES`) and every parameter with at most one dimension (biases, `logit_scale`).

`reference_quirks=True` reproduces the official table: decay is removed only for parameters of the torch norm
classes (not the text encoder's own LayerNorm), `nn.Embedding` and Swin's two position tables; biases, the text
positional embedding, `level_embed`, `lang_proj`, `logit_scale`, `class_embed`, `lang_mapper` are decayed.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

logger = logging.getLogger(__name__)

BACKBONE_KEY = "backbone"
TEXT_ENCODER_KEY = "lang_encoder"
ADAPTER_KEY = ".lora_"  # peft's LoRA parameters: <layer>.lora_A.<adapter>.weight, <layer>.lora_B.<adapter>.weight

# Parameters (or their modules) named like this never get weight decay in the clean rules.
NO_DECAY_NAMES = frozenset(
    {
        "relative_position_bias_table",
        "absolute_pos_embed",
        "positional_embedding",
        "level_embed",
        "query_embed",
        "query_feat",
    }
)
# The only names the reference exempts by parameter name.
REFERENCE_NO_DECAY_NAMES = frozenset({"relative_position_bias_table", "absolute_pos_embed"})

# The norm classes the reference recognises (`train_net.py: build_optimizer`).
REFERENCE_NORM_TYPES = (
    nn.modules.batchnorm._BatchNorm,
    nn.GroupNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
)
# Custom norm classes (text-encoder LayerNorm, Detectron2's LayerNorm/FrozenBatchNorm2d, ...) end like this.
_NORM_CLASS_NAME = re.compile(r"Norm(\dd)?$")


@dataclass(frozen=True)
class ParamRule:
    """Hyper-parameters chosen for one parameter: `reason` names the rule that set the weight decay."""

    name: str
    lr_multiplier: float
    weight_decay: float
    reason: str


def is_norm_module(module: nn.Module) -> bool:
    """True for every normalisation layer: torch norm classes and custom classes named `*Norm`/`*Norm2d`."""
    return isinstance(module, REFERENCE_NORM_TYPES) or bool(_NORM_CLASS_NAME.search(type(module).__name__))


def lr_multiplier_for(name: str, backbone_multiplier: float, text_encoder_multiplier: float,
                      adapter_lr_factor: float = 1.0) -> float:
    """LR multiplier of the parameter called `name` (full dotted name in the model); the factors multiply."""
    multiplier = 1.0
    if BACKBONE_KEY in name:
        multiplier *= backbone_multiplier
    if TEXT_ENCODER_KEY in name:
        multiplier *= text_encoder_multiplier
    if ADAPTER_KEY in name:
        multiplier *= adapter_lr_factor
    return multiplier


def _clean_decay(
    name: str, param: nn.Parameter, module: nn.Module, weight_decay: float, norm_decay: float, embed_decay: float
) -> tuple[float, str]:
    if is_norm_module(module):
        return norm_decay, "norm"
    if isinstance(module, nn.Embedding):
        return embed_decay, "embedding"
    if NO_DECAY_NAMES.intersection(name.split(".")):
        return embed_decay, "position/query table"
    if param.ndim <= 1:
        return 0.0, "1-d"
    return weight_decay, "default"


def _reference_decay(
    name: str, module: nn.Module, weight_decay: float, norm_decay: float, embed_decay: float
) -> tuple[float, str]:
    # The reference applies these checks in this order, each overriding the previous one.
    decay, reason = weight_decay, "default"
    if REFERENCE_NO_DECAY_NAMES.intersection(name.split(".")):
        decay, reason = 0.0, "position/query table"
    if isinstance(module, REFERENCE_NORM_TYPES) and TEXT_ENCODER_KEY not in name:
        decay, reason = norm_decay, "norm"
    if isinstance(module, nn.Embedding):
        decay, reason = embed_decay, "embedding"
    return decay, reason


def param_rules(
    model: nn.Module,
    *,
    weight_decay: float,
    weight_decay_norm: float = 0.0,
    weight_decay_embed: float = 0.0,
    backbone_multiplier: float = 1.0,
    text_encoder_multiplier: float = 1.0,
    adapter_lr_factor: float = 1.0,
    reference_quirks: bool = False,
) -> list[ParamRule]:
    """The LR multiplier and weight decay of every trainable parameter of `model`, in `named_parameters` order.

    A parameter registered under several names (shared modules) appears once, under its first name.
    """
    rules = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        module = model.get_submodule(name.rpartition(".")[0])
        if reference_quirks:
            decay, reason = _reference_decay(name, module, weight_decay, weight_decay_norm, weight_decay_embed)
        else:
            decay, reason = _clean_decay(name, param, module, weight_decay, weight_decay_norm, weight_decay_embed)
        multiplier = lr_multiplier_for(name, backbone_multiplier, text_encoder_multiplier, adapter_lr_factor)
        rules.append(ParamRule(name, multiplier, decay, reason))
    return rules


def param_rules_from_config(cfg, model: nn.Module) -> list[ParamRule]:
    """`param_rules` with the `SOLVER.*` values of `cfg`."""
    solver = cfg.SOLVER
    return param_rules(
        model,
        weight_decay=solver.WEIGHT_DECAY,
        weight_decay_norm=solver.WEIGHT_DECAY_NORM,
        weight_decay_embed=solver.WEIGHT_DECAY_EMBED,
        backbone_multiplier=solver.BACKBONE_MULTIPLIER,
        text_encoder_multiplier=solver.TEXT_ENCODER_MULTIPLIER,
        adapter_lr_factor=solver.FINETUNE.ADAPTER_LR_FACTOR,
        reference_quirks=solver.REFERENCE_WEIGHT_DECAY_QUIRKS,
    )


def build_param_groups(model: nn.Module, rules: list[ParamRule], base_lr: float) -> list[dict]:
    """One optimizer param group per distinct (lr, weight_decay), in first-appearance order."""
    params = dict(model.named_parameters())
    groups: dict[tuple[float, float], dict] = {}
    for rule in rules:
        key = (base_lr * rule.lr_multiplier, rule.weight_decay)
        if key not in groups:
            groups[key] = {"params": [], "lr": key[0], "weight_decay": key[1]}
        groups[key]["params"].append(params[rule.name])
    return list(groups.values())


def build_optimizer(cfg, model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer of `SOLVER.OPTIMIZER` ("ADAMW" or "SGD") over the param groups of `param_rules`."""
    rules = param_rules_from_config(cfg, model)
    counts = Counter((rule.lr_multiplier, rule.weight_decay, rule.reason) for rule in rules)
    for (multiplier, decay, reason), count in sorted(counts.items()):
        logger.info(f"{count} parameter tensors: lr x{multiplier:g}, weight decay {decay:g} ({reason})")
    groups = build_param_groups(model, rules, cfg.SOLVER.BASE_LR)
    name = cfg.SOLVER.OPTIMIZER.upper()
    if name == "ADAMW":
        return torch.optim.AdamW(groups, lr=cfg.SOLVER.BASE_LR)
    if name == "SGD":
        return torch.optim.SGD(groups, lr=cfg.SOLVER.BASE_LR, momentum=cfg.SOLVER.MOMENTUM, nesterov=cfg.SOLVER.NESTEROV)
    raise ValueError(f"SOLVER.OPTIMIZER={cfg.SOLVER.OPTIMIZER!r} is not supported; use 'ADAMW' or 'SGD'")


def optimizer_parameters(optimizer: torch.optim.Optimizer) -> Iterable[torch.Tensor]:
    """Every parameter of every param group of `optimizer`."""
    for group in optimizer.param_groups:
        yield from group["params"]


def clip_full_model_gradients(optimizer: torch.optim.Optimizer, max_norm: float, norm_type: float = 2.0) -> torch.Tensor:
    """Scale all gradients of `optimizer` together so that their global `norm_type`-norm is at most `max_norm`.

    Call after `GradScaler.unscale_`. Returns the global norm before clipping (a 0-dim tensor).
    """
    return torch.nn.utils.clip_grad_norm_(list(optimizer_parameters(optimizer)), max_norm, norm_type=norm_type)
