"""LoRA adapters on a built OpenSeeD (the `peft` library): which layers get them, adding, merging, identifying.

Adapters go on `adapter_target_names(model)`: the linear layers of the pixel decoder and of the decoder, and the text
projection. They are used by the "adapter" fine-tuning mode (`openseed.engine.finetune`) and by adapter files
(`openseed.checkpoint.adapters`).

The text projection `lang_proj` is an `nn.Parameter` (width×DIM_PROJ, the official checkpoint layout) used as
`features @ lang_proj`, and peft adapts modules, not bare matrices used outside a forward. `attach_projection_linear`
therefore gives the `LanguageEncoder` an `nn.Linear` whose weight is a copy of `lang_projᵀ` (same product, frozen) and
which `LanguageEncoder.project` uses while it exists; peft wraps that linear like any other. `merge_adapters` folds
every adapter into its base weight (peft's `merge`), writes the projection back into `lang_proj` and removes the
linear, so the merged model has exactly the state-dict layout of the pre-trained one. The alternative, LoRA on the
text transformer's last linear layer, was not chosen: it does not reach `lang_proj`, and with a frozen (cached)
MiniLM it would force the transformer to run with gradients at every step.

Not adapted (the model would bypass or duplicate the adapter): the `out_proj` of `nn.MultiheadAttention` (its forward
reads the weight directly), linear layers registered under several names (the shared box MLP), and convolutions
with a built-in norm or activation (Detectron2's `Conv2d(norm=..., activation=...)` of the FPN: peft would add the
low-rank term after them, so merging it into the weight would change the output).
"""

from __future__ import annotations

import hashlib

import torch
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora import LoraLayer
from torch import nn

LANGUAGE_ENCODER_PATH = "sem_seg_head.predictor.lang_encoder"
PROJECTION_PATH = LANGUAGE_ENCODER_PATH + ".projection"
PIXEL_DECODER_PREFIX = "sem_seg_head.pixel_decoder."
ADAPTED_PREFIXES = ("sem_seg_head.pixel_decoder.", "sem_seg_head.predictor.")
ADAPTER_NAME = "default"  # peft's adapter name, part of the adapter parameters' names


def language_encoder(model: nn.Module) -> nn.Module:
    return model.get_submodule(LANGUAGE_ENCODER_PATH)


def attach_projection_linear(model: nn.Module) -> nn.Linear:
    """Give the language encoder an `nn.Linear` view of `lang_proj` (weight = a frozen copy of `lang_projᵀ`)."""
    encoder = language_encoder(model)
    width, dim_proj = encoder.lang_proj.shape
    linear = nn.Linear(width, dim_proj, bias=False, device=encoder.lang_proj.device, dtype=encoder.lang_proj.dtype)
    linear.weight = nn.Parameter(encoder.lang_proj.detach().t().clone(), requires_grad=False)
    encoder.projection = linear
    encoder.clear_cache()
    return linear


def is_plain_convolution(module: nn.Module) -> bool:
    """A 2-d convolution whose forward is the convolution alone (no Detectron2 norm or activation inside)."""
    return (isinstance(module, nn.Conv2d) and getattr(module, "norm", None) is None
            and getattr(module, "activation", None) is None)


def adapter_target_names(model: nn.Module, convolutions: bool = False) -> list[str]:
    """Full names of the layers that get adapters (see the module docstring), in module order: linear layers, and
    with `convolutions` also the pixel decoder's plain convolutions.

    Call after `attach_projection_linear`, so that the text projection is among them.
    """
    names_of: dict[int, list[str]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        if isinstance(module, nn.Linear) or (convolutions and name.startswith(PIXEL_DECODER_PREFIX)
                                             and is_plain_convolution(module)):
            names_of.setdefault(id(module), []).append(name)
    inside_attention = {id(m.out_proj) for m in model.modules() if isinstance(m, nn.MultiheadAttention)}
    targets = []
    for module_id, names in names_of.items():
        name = names[0]
        if len(names) > 1 or module_id in inside_attention:
            continue
        if name == PROJECTION_PATH or (name.startswith(ADAPTED_PREFIXES) and not name.startswith(LANGUAGE_ENCODER_PATH)):
            targets.append(name)
    return targets


def base_weights_digest(model: nn.Module, target_names: list[str]) -> str:
    """SHA-256 of the base (pre-trained) weights of the adapted layers: identifies the model an adapter belongs to."""
    hasher = hashlib.sha256()
    for name in target_names:
        module = model.get_submodule(name)
        base = module.get_base_layer() if isinstance(module, LoraLayer) else module
        for key, tensor in sorted(base.state_dict().items()):
            tensor = tensor.detach().float().cpu().contiguous().reshape(-1)
            hasher.update(f"{name}.{key}:{tuple(tensor.shape)}".encode())
            hasher.update(tensor.numpy().tobytes())
    return hasher.hexdigest()


def add_adapters(model: nn.Module, rank: int, alpha: float, target_names: list[str] | None = None,
                 convolutions: bool = False) -> list[str]:
    """Freeze `model` and add trainable LoRA adapters of rank `rank` (scale alpha / rank) to the target layers
    (`adapter_target_names(model, convolutions)`).

    `target_names` (e.g. read from an adapter file) must equal the model's own targets, with convolutions when it
    names one; returns the targets.
    """
    if rank <= 0:
        raise ValueError(f"SOLVER.FINETUNE.ADAPTER_RANK must be positive, got {rank}")
    if any(isinstance(m, LoraLayer) for m in model.modules()):
        raise ValueError("the model already has adapters")
    attach_projection_linear(model)
    if target_names is not None:
        modules = dict(model.named_modules())
        convolutions = any(isinstance(modules.get(name), nn.Conv2d) for name in target_names)
    own = adapter_target_names(model, convolutions)
    if target_names is not None and list(target_names) != own:
        missing = sorted(set(target_names) - set(own))
        extra = sorted(set(own) - set(target_names))
        raise ValueError(f"adapter layers differ from this model's: not in the model {missing[:5]}, "
                         f"not in the adapter {extra[:5]} (was it trained with another config?)")
    model.requires_grad_(False)
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=own, lora_dropout=0.0, bias="none")
    inject_adapter_in_model(config, model, adapter_name=ADAPTER_NAME)
    language_encoder(model).freeze_text_transformer()
    return own


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter tensors (`<layer>.lora_A.default.weight`, `<layer>.lora_B.default.weight`) of `model`."""
    return {key: value for key, value in model.state_dict().items() if ".lora_" in key}


def merge_adapters(model: nn.Module) -> int:
    """Fold every adapter into its base layer, put the projection back into `lang_proj`; returns the count.

    Afterwards the model has the plain (pre-trained) module structure and state-dict keys.
    """
    adapted = [(name, module) for name, module in model.named_modules() if isinstance(module, LoraLayer)]
    for name, module in adapted:
        module.merge()
        parent_name, _, attribute = name.rpartition(".")
        setattr(model.get_submodule(parent_name), attribute, module.get_base_layer())
    encoder = language_encoder(model)
    if encoder.projection is not None:
        with torch.no_grad():
            encoder.lang_proj.copy_(encoder.projection.weight.t())
        encoder.projection = None
        encoder.clear_cache()
    return len(adapted)
