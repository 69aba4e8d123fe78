"""Text side of the model: tokenizer, text encoders (official CLIP-style transformer, Hugging Face folder), prompt
templates, and `LanguageEncoder` (vocabulary -> text embeddings, class logits)."""

from .clip_transformer import ClipTextTransformer
from .embedding_cache import EmbeddingCache
from .hf_encoder import HFTextEncoder, default_hf_model_path, hf_tokenizer
from .language_encoder import LanguageEncoder
from .prompts import PROMPT_TEMPLATES
from .tokenizer import TextTokenizer, build_clip_tokenizer, clip_tokenizer

__all__ = [
    "PROMPT_TEMPLATES",
    "ClipTextTransformer",
    "EmbeddingCache",
    "HFTextEncoder",
    "LanguageEncoder",
    "TextTokenizer",
    "build_clip_tokenizer",
    "clip_tokenizer",
    "default_hf_model_path",
    "hf_tokenizer",
]
