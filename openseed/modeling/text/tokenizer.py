"""Text tokenisation for the text encoders: fixed-length token ids and attention masks.

The CLIP tokenizer is the Hugging Face `CLIPTokenizer` of `openai/clip-vit-base-patch32` (the official choice, docs/official_behaviours.md
§4.1) built offline from the BPE merges file that ships with `open_clip` (`bpe_simple_vocab_16e6.txt.gz`): vocabulary
49 408, `<|startoftext|>` = 49406, `<|endoftext|>` = 49407 = padding. As in the official slow tokenizer, text goes
through `ftfy.fix_text` first.

`TextTokenizer` wraps any Hugging Face tokenizer: every sequence is padded to the context length; a longer one is
truncated (its end-of-text token kept) with a warning that names the text. `length_chunks` groups sequences of
similar length for batched encoding.

Hugging Face fast tokenizers keep their padding and truncation settings as mutable state of the Rust backend, set by
every call: two threads tokenising at once can get each other's settings (an unpadded batch, then "Unable to create
tensor"). `TextTokenizer` calls hold one module-wide lock (the CLIP tokenizer is shared between models).
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import ftfy
import torch
from transformers import CLIPTokenizer, PreTrainedTokenizerBase

CLIP_BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
CLIP_NUM_MERGES = 49152 - 256 - 2  # merges used by CLIP: vocabulary 49 408 = 2 x 256 bytes + merges + 2 specials
CLIP_BOS = "<|startoftext|>"
CLIP_EOS = "<|endoftext|>"
_TOKENIZER_CALLS = threading.Lock()


def clip_bpe_path() -> Path:
    """Path of the BPE merges file inside the installed `open_clip` package (found without importing it)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package open_clip (open_clip_torch) is not installed; it provides {CLIP_BPE_FILE}")
    path = Path(next(iter(spec.submodule_search_locations))) / CLIP_BPE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"CLIP BPE vocabulary not found at {path}")
    return path


def _byte_symbols() -> list[str]:
    """The 256 base symbols of byte-level BPE in vocabulary order: the printable bytes as themselves, then the
    other 68 byte values mapped to the code points 256, 257, ... (so that no base symbol is whitespace/control)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    return [chr(b) for b in printable] + [chr(256 + n) for n in range(256 - len(printable))]


@functools.lru_cache(maxsize=2)
def build_clip_tokenizer(bpe_path: str | None = None) -> CLIPTokenizer:
    """Hugging Face `CLIPTokenizer` from a CLIP BPE merges file (default: the one inside `open_clip`).

    Vocabulary ids: 256 byte symbols, the same with the end-of-word marker `</w>`, one id per merge in rank order,
    then `<|startoftext|>` and `<|endoftext|>`.
    """
    path = Path(bpe_path) if bpe_path else clip_bpe_path()
    lines = gzip.open(path, "rt", encoding="utf-8").read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : CLIP_NUM_MERGES + 1]]
    if len(merges) != CLIP_NUM_MERGES or any(len(m) != 2 for m in merges):
        raise ValueError(f"{path}: expected {CLIP_NUM_MERGES} BPE merges of two symbols after the header line")
    symbols = _byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [CLIP_BOS, CLIP_EOS]
    vocab = {token: index for index, token in enumerate(tokens)}
    return CLIPTokenizer(vocab=vocab, merges=merges, bos_token=CLIP_BOS, eos_token=CLIP_EOS, pad_token=CLIP_EOS)


class TextTokenizer:
    """Texts -> (input_ids N×L int64, attention_mask N×L int64), L = `context_length`, padded at the end.

    Args:
        tokenizer: a Hugging Face tokenizer that adds its own start/end tokens.
        context_length: fixed sequence length L.
        clean_text: applied to every text before tokenisation (the CLIP tokenizer uses `ftfy.fix_text`).
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        context_length: int,
        clean_text: Callable[[str], str] | None = None,
    ):
        if context_length < 2:
            raise ValueError(f"context length must be at least 2 (start and end tokens), got {context_length}")
        self.tokenizer = tokenizer
        self.context_length = context_length
        self.clean_text = clean_text

    @property
    def pad_token_id(self) -> int:
        return self.tokenizer.pad_token_id

    def __call__(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        texts = list(texts)
        if self.clean_text is not None:
            texts = [self.clean_text(t) for t in texts]
        with _TOKENIZER_CALLS:
            lengths = [len(ids) for ids in self.tokenizer(texts)["input_ids"]]
            encoded = self.tokenizer(
                texts, padding="max_length", truncation=True, max_length=self.context_length, return_tensors="pt"
            )
        for text, length in zip(texts, lengths):
            if length > self.context_length:
                shown = text if len(text) <= 80 else text[:77] + "..."
                warnings.warn(
                    f"text {shown!r} has {length} tokens, more than the context length {self.context_length}; "
                    "it is truncated (the end-of-text token is kept)",
                    stacklevel=2,
                )
        return encoded["input_ids"].long(), encoded["attention_mask"].long()


def clip_tokenizer(context_length: int, bpe_path: str | None = None) -> TextTokenizer:
    """The official text tokenisation: CLIP BPE, `ftfy.fix_text`, padded with `<|endoftext|>` to `context_length`."""
    return TextTokenizer(build_clip_tokenizer(bpe_path), context_length, clean_text=ftfy.fix_text)


def length_chunks(lengths: Sequence[int], max_tokens: int, min_fill: float = 0.75) -> list[list[int]]:
    """Row indices grouped for batched encoding, longest first.

    A chunk holds rows whose length is at least `min_fill` times its first (longest) row's, and at most `max_tokens`
    tokens once every row is padded to that length (a longer single row gets a chunk of its own).
    """
    chunks: list[list[int]] = []
    for index in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        if chunks:
            longest = lengths[chunks[-1][0]]
            if lengths[index] >= min_fill * longest and (len(chunks[-1]) + 1) * longest <= max_tokens:
                chunks[-1].append(index)
                continue
        chunks.append([index])
    return chunks
