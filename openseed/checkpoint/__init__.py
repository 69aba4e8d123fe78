"""Checkpoint files: atomic saving, tensors-only loading, and conversion of official OpenSeeD checkpoints."""

from .convert import (
    CheckpointConversionError,
    ConversionReport,
    convert_official_state_dict,
    load_official_weights,
    shared_tensor_groups,
    unwrap_official_checkpoint,
)
from .io import CheckpointError, atomic_write, is_safetensors, load_checkpoint, save_checkpoint

__all__ = [
    "CheckpointConversionError",
    "CheckpointError",
    "ConversionReport",
    "atomic_write",
    "convert_official_state_dict",
    "is_safetensors",
    "load_checkpoint",
    "load_official_weights",
    "save_checkpoint",
    "shared_tensor_groups",
    "unwrap_official_checkpoint",
]
