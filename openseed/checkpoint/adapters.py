"""Adapter files: the LoRA tensors of an "adapter" fine-tuning run, saved apart from the pre-trained model.

`MODEL.WEIGHTS` (the pre-trained model) + `MODEL.ADAPTER_WEIGHTS` (this file) give the fine-tuned model:

    save_adapter(model, "output/ft/adapter_final.safetensors")      # after training (tools/train_net.py)
    load_model_weights(model, cfg)                                 # MODEL.WEIGHTS, then the adapter, merged

A `.safetensors` file, written atomically (`openseed.checkpoint.atomic_write`) and read without executing code.
Its metadata holds everything needed to rebuild the adapters: rank, alpha, the adapted layers, and the SHA-256 of the
base weights of those layers; loading onto a model whose base weights differ (another MODEL.WEIGHTS) is refused.
"""

from __future__ import annotations

import json
import logging
import os

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes
from torch import nn

from openseed.modeling.lora import ADAPTER_NAME, adapter_state_dict, add_adapters, base_weights_digest, merge_adapters
from openseed.utils.malloc import release_free_heap

from .initial import initialise_text_encoder
from .io import CheckpointError, atomic_write, load_checkpoint
from .strict import load_model_file

logger = logging.getLogger(__name__)

ADAPTER_FORMAT = "openseed-lora-1"
ADAPTER_FILENAME = "adapter_final.safetensors"


def save_adapter(model: nn.Module, path: str | os.PathLike, *, rank: int, alpha: float) -> int:
    """Write the adapters of `model` (rank `rank`, scale alpha / rank) to `path`; returns the file size in bytes."""
    tensors = {key.replace(f".{ADAPTER_NAME}.", "."): value.detach().cpu().contiguous()
               for key, value in adapter_state_dict(model).items()}
    if not tensors:
        raise ValueError("the model has no adapters to save (SOLVER.FINETUNE.MODE is not 'adapter'?)")
    targets = sorted({key.split(".lora_")[0] for key in tensors}, key=list(dict(model.named_modules())).index)
    metadata = {"format": ADAPTER_FORMAT, "rank": str(rank), "alpha": repr(float(alpha)),
                "target_modules": json.dumps(targets), "base_sha256": base_weights_digest(model, targets)}
    payload = safetensors_bytes(tensors, metadata=metadata)
    atomic_write(path, lambda handle: handle.write(payload))
    logger.info(f"saved {len(targets)} adapters ({len(payload):,} bytes) to {path}")
    return len(payload)


def read_adapter_metadata(path: str | os.PathLike) -> dict:
    """Rank, alpha, target modules and base digest stored in an adapter file (CheckpointError if it is not one)."""
    if not os.path.isfile(path):
        raise CheckpointError(f"adapter file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except SafetensorError as error:
        raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from error
    if metadata.get("format") != ADAPTER_FORMAT:
        raise CheckpointError(f"{path}: not an openseed adapter file (format {metadata.get('format')!r}, "
                              f"expected {ADAPTER_FORMAT!r})")
    return {"rank": int(metadata["rank"]), "alpha": float(metadata["alpha"]),
            "target_modules": json.loads(metadata["target_modules"]), "base_sha256": metadata["base_sha256"]}


def load_adapter(model: nn.Module, path: str | os.PathLike, *, merge: bool = True) -> dict:
    """Add the adapters of `path` to `model` (which holds the pre-trained weights) and load their tensors.

    `merge=True` folds them into the weights (inference: the plain model structure, no extra cost);
    `merge=False` keeps them as trainable adapters (continue an adapter fine-tuning). Returns the file's metadata.
    Raises CheckpointError naming the file when it does not fit the model or its base weights.
    """
    metadata = read_adapter_metadata(path)
    try:
        targets = add_adapters(model, metadata["rank"], metadata["alpha"], metadata["target_modules"])
    except ValueError as error:
        raise CheckpointError(f"{path}: {error}") from error
    if base_weights_digest(model, targets) != metadata["base_sha256"]:
        raise CheckpointError(f"{path}: the adapter was trained on other base weights than the loaded MODEL.WEIGHTS "
                              "(SHA-256 of the adapted layers differs); load the pre-trained model it was made for")
    stored = load_checkpoint(path)
    expected = {key.replace(f".{ADAPTER_NAME}.", "."): key for key in adapter_state_dict(model)}
    missing, unexpected = sorted(set(expected) - set(stored)), sorted(set(stored) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{path}: adapter tensors missing {missing[:5]}, unexpected {unexpected[:5]}")
    own = model.state_dict()
    for key, full_key in expected.items():
        if tuple(stored[key].shape) != tuple(own[full_key].shape):
            raise CheckpointError(f"{path}: {key} has shape {tuple(stored[key].shape)}, the model "
                                  f"{tuple(own[full_key].shape)}")
    with torch.no_grad():
        for key, full_key in expected.items():
            own[full_key].copy_(stored[key])
    if merge:
        merge_adapters(model)
    logger.info(f"loaded {len(targets)} adapters from {path}{' (merged into the weights)' if merge else ''}")
    return metadata


def load_model_weights(model: nn.Module, cfg, weights: str | None = None) -> None:
    """The weights of a model built for inference (the model is built without any):
    `MODEL.TEXT.INIT_WEIGHTS` (openseed.checkpoint.initial), then `weights` (default `MODEL.WEIGHTS`, strict, which
    replaces them when set), then `MODEL.ADAPTER_WEIGHTS` merged."""
    initialise_text_encoder(model, cfg)
    weights = cfg.MODEL.WEIGHTS if weights is None else weights
    if weights:
        load_model_file(model, weights)
    if cfg.MODEL.ADAPTER_WEIGHTS:
        if not weights:
            raise ValueError("MODEL.ADAPTER_WEIGHTS needs MODEL.WEIGHTS: the pre-trained model the adapter was made for")
        load_adapter(model, cfg.MODEL.ADAPTER_WEIGHTS, merge=True)
    release_free_heap()  # the checkpoints read are freed: do not keep their memory resident for the evaluation
