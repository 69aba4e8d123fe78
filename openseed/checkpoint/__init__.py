"""Weights in and out of the model: checkpoint files (`io`), strict whole-model loading (`strict`), the initial
weights of the text encoder and backbone (`initial`), adapter files and inference weights (`adapters`), and
conversion of official OpenSeeD checkpoints (`convert`)."""

from .adapters import ADAPTER_FILENAME, load_adapter, load_model_weights, read_adapter_metadata, save_adapter
from .convert import (
    CheckpointConversionError,
    ConversionReport,
    convert_official_state_dict,
    load_official_weights,
    shared_tensor_groups,
    unwrap_official_checkpoint,
)
from .initial import (
    initialise_backbone,
    initialise_text_encoder,
    load_backbone_weights,
    load_text_encoder_weights,
)
from .io import CheckpointError, atomic_write, is_safetensors, load_checkpoint, save_checkpoint
from .strict import CheckpointMismatchError, check_state_dict_fits, load_model_file, read_checkpoint

__all__ = [
    "ADAPTER_FILENAME",
    "CheckpointConversionError",
    "CheckpointError",
    "CheckpointMismatchError",
    "ConversionReport",
    "atomic_write",
    "check_state_dict_fits",
    "convert_official_state_dict",
    "initialise_backbone",
    "initialise_text_encoder",
    "is_safetensors",
    "load_adapter",
    "load_backbone_weights",
    "load_checkpoint",
    "load_model_file",
    "load_model_weights",
    "load_official_weights",
    "load_text_encoder_weights",
    "read_adapter_metadata",
    "read_checkpoint",
    "save_adapter",
    "save_checkpoint",
    "shared_tensor_groups",
    "unwrap_official_checkpoint",
]
