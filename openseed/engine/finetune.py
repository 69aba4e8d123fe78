"""Fine-tuning modes (`SOLVER.FINETUNE.MODE`): which parameters of a pre-trained OpenSeeD train.

- "full": what the config trains (all parameters, except a text transformer frozen by `MODEL.TEXT.FREEZE_ENCODER`);
- "frozen-backbone": the backbone and the text transformer are frozen; pixel decoder, decoder, `lang_proj` and
  `logit_scale` train;
- "adapter": every pre-trained parameter is frozen; LoRA adapters (the `peft` library) train on
  `adapter_target_names(model)`: the linear layers of the pixel decoder and of the decoder, and the text projection;
  with `SOLVER.FINETUNE.ADAPTER_CONV` also the pixel decoder's plain convolutions (its input projections and
  `mask_features`, which makes the per-pixel mask embedding that no linear layer reaches);
- "prompt": only the text side trains: `lang_proj` and `logit_scale` (the text transformer stays frozen).

Frozen parameters get `requires_grad=False`, so they receive no gradient and `build_optimizer` (which only takes
parameters that require gradients) keeps no optimizer state for them.

The adapters themselves (which layers, adding, merging) are in `openseed.modeling.lora`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from torch import nn

from openseed.modeling.lora import add_adapters, language_encoder

logger = logging.getLogger(__name__)

FINETUNE_MODES = ("full", "frozen-backbone", "adapter", "prompt")
BACKBONE_PATH = "backbone"


@dataclass(frozen=True)
class TrainableSummary:
    """Parameter counts after a fine-tuning mode was applied (shared parameters counted once)."""

    mode: str
    trainable: int
    total: int

    @property
    def fraction(self) -> float:
        return self.trainable / max(self.total, 1)

    def describe(self) -> str:
        return (f"fine-tuning mode {self.mode!r}: {self.trainable:,} of {self.total:,} parameters train "
                f"({100 * self.fraction:.3f} %)")


def count_parameters(model: nn.Module, mode: str, total: int | None = None) -> TrainableSummary:
    """Trainable parameters of `model` out of `total` (default: all of its parameters; each shared one once)."""
    params = list(model.parameters())
    total = sum(p.numel() for p in params) if total is None else total
    return TrainableSummary(mode, sum(p.numel() for p in params if p.requires_grad), total)


def apply_finetune_mode(model: nn.Module, mode: str, *, rank: int = 8, alpha: float = 16.0,
                        convolutions: bool = False) -> TrainableSummary:
    """Freeze the parts of `model` that `mode` keeps fixed (adding adapters in "adapter" mode); logs the counts
    (out of the pre-trained model's parameters, without the adapters)."""
    if mode not in FINETUNE_MODES:
        raise ValueError(f"SOLVER.FINETUNE.MODE must be one of {FINETUNE_MODES}, got {mode!r}")
    pretrained_total = count_parameters(model, mode).total
    if mode == "frozen-backbone":
        model.get_submodule(BACKBONE_PATH).requires_grad_(False)
        language_encoder(model).freeze_text_transformer()
    elif mode == "prompt":
        model.requires_grad_(False)
        encoder = language_encoder(model)
        encoder.freeze_text_transformer()
        encoder.lang_proj.requires_grad_(True)
        encoder.logit_scale.requires_grad_(True)
    elif mode == "adapter":
        add_adapters(model, rank, alpha, convolutions=convolutions)
    summary = count_parameters(model, mode, pretrained_total)
    logger.info(summary.describe())
    return summary


def apply_finetune_config(cfg, model: nn.Module) -> TrainableSummary:
    """`apply_finetune_mode` with `SOLVER.FINETUNE.*` of `cfg`."""
    finetune = cfg.SOLVER.FINETUNE
    return apply_finetune_mode(model, finetune.MODE, rank=finetune.ADAPTER_RANK, alpha=finetune.ADAPTER_ALPHA,
                               convolutions=finetune.ADAPTER_CONV)
