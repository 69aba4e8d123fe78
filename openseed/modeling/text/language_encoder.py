"""`LanguageEncoder` (= `sem_seg_head.predictor.lang_encoder`): vocabulary -> unit-norm text embeddings K×DIM_PROJ,
and the class logits of visual embeddings against them (docs/official_behaviours.md §4).

Attributes (official names, so checkpoints map 1:1): `lang_encoder` (the CLIP-style transformer or a Hugging Face
backbone), `lang_proj` (width×DIM_PROJ), `logit_scale` (scalar; logits use exp(logit_scale)).

Prompts (docs/official_behaviours.md §4.3): a class name is normalised with `openseed.vocabulary.normalize_class_name` and put into a prompt
template. Evaluation encodes every template (prompt ensemble: each prompt embedding L2-normalised, mean over the
prompts of a class, renormalised), without gradients, cached per (names, normalisation, templates) in memory and
optionally on disk. Training draws one template per class (and one synonym per class for "a/b" names) and keeps the
gradients; nothing is cached. The encoders only compute the positions that matter (see `clip_transformer`), which
makes the ensemble fast and training light.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from detectron2.config import configurable
from torch import nn

from openseed.structures import TRAIN_TASKS
from openseed.utils.malloc import release_free_heap
from openseed.utils.random_draws import TrainingDraws
from openseed.vocabulary import Vocabulary, normalize_class_name, synonyms

from .clip_transformer import ClipTextTransformer
from .embedding_cache import EmbeddingCache
from .hf_encoder import HFTextEncoder, default_hf_model_path, hf_tokenizer
from .prompts import PROMPT_TEMPLATES
from .tokenizer import TextTokenizer, clip_tokenizer

# DATASETS.CLASS_NAME_NORMALISATION -> (training mode, evaluation mode) of `normalize_class_name`
NORMALISATION_MODES = {
    "consistent": ("consistent", "consistent"),
    "reference": ("reference-train", "reference-eval"),
}
# The official code rewrites "a-b" as "b a" only for its COCO (segmentation) training names: detection training
# names keep their words, so in "reference" mode `det` training uses the evaluation normalisation.
DETECTION_TRAIN_MODES = {"consistent": "consistent", "reference": "reference-eval"}


def _clear_cache_after_load(module: LanguageEncoder, incompatible_keys) -> None:
    module.clear_cache()


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1e".join(parts).encode("utf-8")).hexdigest()[:32]


class LanguageEncoder(nn.Module):
    """Text side of OpenSeeD: `embed_vocabulary` (K×DIM_PROJ, unit norm) and `similarity` (class logits).

    Args:
        lang_encoder: module mapping (input_ids N×L, attention_mask N×L, groups=None) to pooled features N×width,
            with attribute `width`; `groups` (N template ids) may let it share work between prompts of a template.
        tokenizer: texts -> (input_ids, attention_mask), both N×L.
        dim_proj: output embedding size.
        class_name_normalisation: "consistent" or "reference" (DATASETS.CLASS_NAME_NORMALISATION).
        prompt_ensemble: evaluation encodes all templates; otherwise only the first ("{}.").
        cache_dir: directory of the on-disk embedding cache; empty disables it.
        freeze_encoder: keep `lang_encoder` fixed (no gradients, always in eval mode, e.g. a pretrained MiniLM);
            `lang_proj` and `logit_scale` still train. Its features of each training prompt are then computed once
            (on their own, see `_frozen_prompt_features`) and kept in memory.
    """

    @configurable
    def __init__(
        self,
        *,
        lang_encoder: nn.Module,
        tokenizer: TextTokenizer,
        dim_proj: int,
        class_name_normalisation: str = "consistent",
        prompt_ensemble: bool = True,
        cache_dir: str = "",
        freeze_encoder: bool = False,
    ):
        super().__init__()
        if class_name_normalisation not in NORMALISATION_MODES:
            raise ValueError(
                f"DATASETS.CLASS_NAME_NORMALISATION must be one of {sorted(NORMALISATION_MODES)}, "
                f"got {class_name_normalisation!r}"
            )
        self.lang_encoder = lang_encoder
        self.freeze_encoder = False
        self._frozen_features: dict[str, torch.Tensor] = {}
        if freeze_encoder:
            self.freeze_text_transformer()
        self.tokenizer = tokenizer
        self.lang_proj = nn.Parameter(torch.empty(lang_encoder.width, dim_proj))
        nn.init.trunc_normal_(self.lang_proj, std=0.02)
        # `lang_proj` as an nn.Linear (weight = lang_projᵀ) while low-rank adapters train it; None otherwise
        # (see openseed.engine.finetune.attach_projection_linear)
        self.projection: nn.Linear | None = None
        self.logit_scale = nn.Parameter(torch.ones([]))
        self.train_mode, self.eval_mode = NORMALISATION_MODES[class_name_normalisation]
        self.det_train_mode = DETECTION_TRAIN_MODES[class_name_normalisation]
        self.templates = PROMPT_TEMPLATES
        self.eval_templates = PROMPT_TEMPLATES if prompt_ensemble else PROMPT_TEMPLATES[:1]
        self.cache = EmbeddingCache(cache_dir)
        self._weights_digest: str | None = None
        self.register_load_state_dict_post_hook(_clear_cache_after_load)

    @classmethod
    def from_config(cls, cfg):
        text = cfg.MODEL.TEXT
        if text.ENCODER == "clip":
            lang_encoder = ClipTextTransformer(
                context_length=text.CONTEXT_LENGTH,
                width=text.WIDTH,
                layers=text.LAYERS,
                heads=text.HEADS,
                causal=text.CAUSAL,
                activation_checkpoint=text.ACTIVATION_CHECKPOINT,
            )
            tokenizer = clip_tokenizer(text.CONTEXT_LENGTH)
        elif text.ENCODER == "hf":
            if text.INIT_WEIGHTS:
                raise ValueError("MODEL.TEXT.INIT_WEIGHTS applies to the CLIP encoder; the HF encoder loads its folder")
            model_path = text.HF_MODEL_PATH or default_hf_model_path()
            lang_encoder = HFTextEncoder(model_path)
            tokenizer = hf_tokenizer(model_path, text.CONTEXT_LENGTH)
        else:
            raise ValueError(f"MODEL.TEXT.ENCODER must be 'clip' or 'hf', got {text.ENCODER!r}")
        return {
            "lang_encoder": lang_encoder,
            "tokenizer": tokenizer,
            "dim_proj": cfg.MODEL.DIM_PROJ,
            "class_name_normalisation": cfg.DATASETS.CLASS_NAME_NORMALISATION,
            "prompt_ensemble": text.EVAL_PROMPT_ENSEMBLE,
            "cache_dir": text.CACHE_DIR,
            "freeze_encoder": text.FREEZE_ENCODER,
        }

    # ----------------------------------------------------------------------------------------------- public API
    def embed_vocabulary(
        self, vocabulary: Vocabulary, train: bool, draws: TrainingDraws | None = None, task: str = "seg"
    ) -> torch.Tensor:
        """Unit-norm text embeddings K×DIM_PROJ of a vocabulary's classes (row k = class id k).

        `train=False`: prompt ensemble, no gradients, cached. `train=True`: one random template (and synonym) per
        class, drawn from `draws` (keys "templates", "synonyms"; default: fresh draws from the global RNG), with
        gradients; `task` ("seg" or "det") selects the training normalisation (`DETECTION_TRAIN_MODES`).
        """
        if not isinstance(vocabulary, Vocabulary):
            raise TypeError(f"embed_vocabulary expects an openseed.vocabulary.Vocabulary, got {type(vocabulary)}")
        return self.embed_names(vocabulary.names, train=train, draws=draws, task=task)

    def embed_names(self, names: Sequence[str], train: bool, draws: TrainingDraws | None = None,
                    task: str = "seg") -> torch.Tensor:
        """As `embed_vocabulary`, for bare class names (e.g. the concepts of box-prompted segmentation)."""
        names = tuple(str(n) for n in names)
        if not names:
            raise ValueError("empty vocabulary: there are no class names to embed")
        if train:
            prompts, template_ids = self.training_prompts(names, draws or TrainingDraws(), task)
            return self._encode_prompts(prompts, groups=template_ids, reuse_features=self.freeze_encoder)
        return self._cached_eval_embeddings(names)

    def similarity(self, visual: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Class logits B×Q×K = exp(logit_scale) · (visual / ‖visual‖) · textᵀ for visual B×Q×D and text K×D."""
        visual = visual / (visual.norm(dim=-1, keepdim=True) + 1e-7)
        return self.logit_scale.exp() * visual @ text.t()

    def clear_cache(self) -> None:
        """Forget cached evaluation embeddings (done automatically on `train()` and `load_state_dict`)."""
        self.cache.clear_memory()
        self._weights_digest = None
        self._frozen_features.clear()

    def freeze_text_transformer(self) -> None:
        """Keep `lang_encoder` fixed from now on: no gradients, always in eval mode, prompt features kept in memory."""
        self.freeze_encoder = True
        self.lang_encoder.requires_grad_(False)
        self.lang_encoder.eval()
        self._frozen_features.clear()

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """Encoder features N×width -> N×DIM_PROJ through `lang_proj` (or its adapted `projection` view)."""
        if self.projection is not None:
            return self.projection(features)
        return features @ self.lang_proj

    def train(self, mode: bool = True):
        if mode:
            self.clear_cache()
        super().train(mode)
        if self.freeze_encoder:
            self.lang_encoder.eval()
        return self

    # -------------------------------------------------------------------------------------------------- prompts
    def training_prompts(
        self, names: tuple[str, ...], draws: TrainingDraws, task: str = "seg"
    ) -> tuple[list[str], list[int]]:
        """One prompt per class and the id of its template (the group whose leading words are encoded once)."""
        if task not in TRAIN_TASKS:
            raise ValueError(f"training prompts are for task 'seg' or 'det', got {task!r}")
        mode = self.det_train_mode if task == "det" else self.train_mode
        template_ids = draws.integers("templates", len(self.templates), len(names))
        options = [synonyms(name) for name in names]
        sizes = [len(o) for o in options]
        picks = draws.choices("synonyms", sizes) if max(sizes) > 1 else [0] * len(sizes)
        prompts = [self.templates[template_id].format(normalize_class_name(names_of_class[pick], mode))
                   for template_id, names_of_class, pick in zip(template_ids, options, picks)]
        return prompts, template_ids

    def _eval_class_texts(self, name: str) -> list[str]:
        """Texts of one class at evaluation: all its synonyms in "consistent" mode, the whole name otherwise."""
        variants = synonyms(name) if self.eval_mode == "consistent" else (name,)
        return [normalize_class_name(v, self.eval_mode) for v in variants]

    # ------------------------------------------------------------------------------------------------- encoding
    def _encode_prompts(self, prompts: Sequence[str], groups: Sequence[int] | None = None,
                        reuse_features: bool = False) -> torch.Tensor:
        """Prompts -> N×DIM_PROJ, each row L2-normalised (eps 1e-7 as the official).

        `groups` (one id per prompt, its template) lets the CLIP encoder encode a template's words once.
        `reuse_features` (frozen encoder only) takes each prompt's encoder features from memory, encoding new ones.
        """
        if reuse_features:
            features = self._frozen_prompt_features(prompts)
        else:
            input_ids, attention_mask = self.tokenizer(prompts)
            device = self.lang_proj.device
            groups = torch.as_tensor(groups) if groups is not None else None
            features = self.lang_encoder(input_ids.to(device), attention_mask.to(device), groups=groups)
        embeddings = self.project(features)
        return embeddings / (embeddings.norm(dim=-1, keepdim=True) + 1e-7)

    @torch.no_grad()
    def _frozen_prompt_features(self, prompts: Sequence[str]) -> torch.Tensor:
        """N×width features of the frozen encoder; each distinct prompt is encoded once, then kept.

        A new prompt is encoded on its own (a batch of one): its features are then a function of the prompt alone,
        not of the other prompts new in the same step, whose padding and batch size change the last bits. So a run
        resumed with an empty store computes the features the uninterrupted run kept, and stays bit-identical.
        """
        device = self.lang_proj.device
        for prompt in dict.fromkeys(p for p in prompts if p not in self._frozen_features):
            input_ids, attention_mask = self.tokenizer([prompt])
            self._frozen_features[prompt] = self.lang_encoder(input_ids.to(device), attention_mask.to(device))[0]
        return torch.stack([self._frozen_features[p] for p in prompts])

    @torch.no_grad()
    def _ensemble_embeddings(self, names: tuple[str, ...]) -> torch.Tensor:
        """Prompt ensemble K×DIM_PROJ: mean of the unit prompt embeddings of each class, renormalised.

        Always float32 (autocast off): the result is cached in memory and on disk under a key without a precision.
        """
        with torch.autocast(device_type=self.lang_proj.device.type, enabled=False):
            return self._ensemble_embeddings_fp32(names)

    def _ensemble_embeddings_fp32(self, names: tuple[str, ...]) -> torch.Tensor:
        prompts, class_ids, template_ids = [], [], []
        for class_id, name in enumerate(names):
            for text in self._eval_class_texts(name):
                prompts.extend(template.format(text) for template in self.eval_templates)
                class_ids.extend([class_id] * len(self.eval_templates))
                template_ids.extend(range(len(self.eval_templates)))
        embeddings = self._encode_prompts(prompts, groups=template_ids).float()
        class_ids = torch.tensor(class_ids, device=embeddings.device)
        sums = embeddings.new_zeros(len(names), embeddings.shape[1]).index_add_(0, class_ids, embeddings)
        counts = torch.bincount(class_ids, minlength=len(names)).unsqueeze(1).to(sums.dtype)
        means = sums / counts
        return means / means.norm(dim=-1, keepdim=True)

    def _cached_eval_embeddings(self, names: tuple[str, ...]) -> torch.Tensor:
        device = self.lang_proj.device
        memory_key = _digest(self.eval_mode, *self.eval_templates, "\x1d", *names)
        embeddings = self.cache.get(memory_key)
        if embeddings is not None:
            return embeddings.to(device)
        disk_key = _digest(memory_key, self._weights_hash()) if self.cache.on_disk else None
        if disk_key is not None:
            embeddings = self.cache.load(disk_key, names)
        if embeddings is None:
            embeddings = self._ensemble_embeddings(names)
            release_free_heap()
            if disk_key is not None:
                self.cache.save(disk_key, names, embeddings)
        embeddings = embeddings.to(device)
        self.cache.put(memory_key, embeddings)
        return embeddings

    def _weights_hash(self) -> str:
        """SHA-256 of every text-encoder tensor (names, dtypes, shapes, values); memoised until the cache clears."""
        if self._weights_digest is None:
            hasher = hashlib.sha256(type(self.lang_encoder).__name__.encode("utf-8"))
            for key, tensor in self.state_dict().items():
                tensor = tensor.detach().cpu().contiguous().reshape(-1)
                hasher.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
                hasher.update(tensor.view(torch.uint8).numpy())
            self._weights_digest = hasher.hexdigest()
        return self._weights_digest
