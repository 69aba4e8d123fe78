"""LanguageEncoder: prompt ensemble, training prompts, caching, similarity, configuration (tiny random models)."""

import re

import pytest
import torch

from openseed.config import get_cfg
from openseed.modeling.text import ClipTextTransformer, LanguageEncoder, clip_tokenizer
from openseed.modeling.text.prompts import PROMPT_TEMPLATES
from openseed.utils.random_draws import TrainingDraws
from openseed.vocabulary import Vocabulary

CONTEXT, WIDTH, DIM = 24, 32, 16
VOCAB = Vocabulary.from_names(["cat", "traffic light", "Moniter/TV"], ["wall-brick", "sky-other-merged"])


def make_encoder(normalisation="consistent", seed=0, max_tokens_per_chunk=8192, **kwargs) -> LanguageEncoder:
    torch.manual_seed(seed)
    transformer = ClipTextTransformer(
        context_length=CONTEXT, width=WIDTH, layers=2, heads=4, max_tokens_per_chunk=max_tokens_per_chunk
    )
    return LanguageEncoder(
        lang_encoder=transformer,
        tokenizer=clip_tokenizer(CONTEXT),
        dim_proj=DIM,
        class_name_normalisation=normalisation,
        **kwargs,
    )


class ForwardCounter:
    def __init__(self, module):
        self.calls = 0
        module.register_forward_hook(lambda *args: setattr(self, "calls", self.calls + 1))


def recorded_prompts(encoder, monkeypatch) -> list[list[str]]:
    """Record the texts the encoder tokenises."""
    seen, tokenize = [], encoder.tokenizer

    def recording(texts):
        seen.append(list(texts))
        return tokenize(texts)

    monkeypatch.setattr(encoder, "tokenizer", recording)
    return seen


def reference_embedding(encoder, prompts):
    """Official recipe, full context, one class: unit prompt embeddings (eps 1e-7), mean, renormalised."""
    ids, mask = clip_tokenizer(CONTEXT)(prompts)
    transformer = encoder.lang_encoder
    hidden = transformer.hidden_states(ids, mask)[torch.arange(len(ids)), ids.argmax(-1)]
    x = hidden @ encoder.lang_proj
    x = x / (x.norm(dim=-1, keepdim=True) + 1e-7)
    mean = x.mean(dim=0)
    return mean / mean.norm()


def test_eval_embeddings_are_the_prompt_ensemble():
    encoder = make_encoder("reference").eval()
    embeddings = encoder.embed_vocabulary(VOCAB, train=False)
    assert embeddings.shape == (5, DIM) and not embeddings.requires_grad
    torch.testing.assert_close(embeddings.norm(dim=-1), torch.ones(5))
    texts = ["cat", "traffic light", "Moniter/TV", "wall-brick", "sky"]  # reference-eval: no hyphen rewrite
    with torch.no_grad():
        for row, text in enumerate(texts):
            expected = reference_embedding(encoder, [t.format(text) for t in PROMPT_TEMPLATES])
            torch.testing.assert_close(embeddings[row], expected, atol=1e-5, rtol=0, msg=text)


def test_consistent_eval_averages_synonyms_and_rewrites_hyphens(monkeypatch):
    encoder = make_encoder("consistent").eval()
    prompts = recorded_prompts(encoder, monkeypatch)
    embeddings = encoder.embed_vocabulary(VOCAB, train=False)
    texts = set(prompts[0])
    assert {"a photo of a moniter.", "a photo of a tv.", "a photo of a brick wall.", "sky."} <= texts
    assert len(prompts[0]) == 81 * 6  # Moniter/TV counts twice
    with torch.no_grad():
        expected = reference_embedding(encoder, [t.format(s) for s in ("moniter", "tv") for t in PROMPT_TEMPLATES])
    torch.testing.assert_close(embeddings[2], expected, atol=1e-5, rtol=0)


def test_training_prompts_are_random_per_class_with_synonyms(monkeypatch):
    encoder = make_encoder("reference").train()
    prompts = recorded_prompts(encoder, monkeypatch)
    first = encoder.embed_vocabulary(VOCAB, train=True, draws=TrainingDraws(torch.Generator().manual_seed(1)))
    again = encoder.embed_vocabulary(VOCAB, train=True, draws=TrainingDraws(torch.Generator().manual_seed(1)))
    other = encoder.embed_vocabulary(VOCAB, train=True, draws=TrainingDraws(torch.Generator().manual_seed(2)))
    assert prompts[0] == prompts[1] != prompts[2]
    torch.testing.assert_close(first, again)
    assert (first - other).abs().amax() > 1e-3
    assert all(len(p) == 5 for p in prompts)
    assert "brick wall" in prompts[0][3]  # reference-train rewrites "a-b" as "b a"
    seen_synonyms = set()
    for seed in range(20):
        encoder.embed_vocabulary(VOCAB, train=True, draws=TrainingDraws(torch.Generator().manual_seed(seed)))
        words = set(re.findall(r"[a-z]+", prompts[-1][2]))
        assert ("moniter" in words) != ("tv" in words)
        seen_synonyms.add("moniter" if "moniter" in words else "tv")
    assert seen_synonyms == {"moniter", "tv"}


def test_training_embeddings_have_gradients_and_match_full_context():
    encoder = make_encoder().train()
    generator = torch.Generator().manual_seed(3)
    embeddings = encoder.embed_vocabulary(VOCAB, train=True, draws=TrainingDraws(generator))
    assert embeddings.requires_grad
    (embeddings * torch.randn_like(embeddings)).sum().backward()
    for name in (
        "lang_proj",
        "lang_encoder.token_embedding.weight",
        "lang_encoder.resblocks.0.attn.in_proj_weight",
        "lang_encoder.positional_embedding",
        "lang_encoder.ln_final.weight",
    ):
        grad = dict(encoder.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    prompts, _ = encoder.training_prompts(VOCAB.names, TrainingDraws(torch.Generator().manual_seed(3)))
    with torch.no_grad():
        for row, prompt in enumerate(prompts):
            torch.testing.assert_close(
                embeddings[row].detach(), reference_embedding(encoder, [prompt]), atol=1e-5, rtol=0
            )


def test_small_chunks_give_the_same_embeddings():
    whole = make_encoder().eval().embed_vocabulary(VOCAB, train=False)
    chunked = make_encoder(max_tokens_per_chunk=8).eval().embed_vocabulary(VOCAB, train=False)
    torch.testing.assert_close(whole, chunked, atol=1e-5, rtol=0)


def test_memory_cache_hit_and_invalidation():
    encoder = make_encoder().eval()
    counter = ForwardCounter(encoder.lang_encoder)
    first = encoder.embed_vocabulary(VOCAB, train=False)
    calls = counter.calls
    assert calls > 0
    assert torch.equal(encoder.embed_vocabulary(VOCAB, train=False), first)
    assert counter.calls == calls  # served from the cache
    encoder.embed_vocabulary(Vocabulary.from_names(["dog"]), train=False)
    assert counter.calls > calls  # another vocabulary is encoded
    calls = counter.calls
    encoder.train().eval()  # a training phase may change the weights
    encoder.embed_vocabulary(VOCAB, train=False)
    assert counter.calls > calls
    calls = counter.calls
    with torch.no_grad():
        changed = {k: v + 0.01 for k, v in encoder.state_dict().items()}
    encoder.load_state_dict(changed)
    assert not torch.allclose(encoder.embed_vocabulary(VOCAB, train=False), first)
    assert counter.calls > calls


def test_disk_cache_round_trip(tmp_path, caplog):
    writer = make_encoder(cache_dir=str(tmp_path)).eval()
    expected = writer.embed_vocabulary(VOCAB, train=False)
    files = list(tmp_path.glob("text_embeddings_*.pt"))
    assert len(files) == 1

    reader = make_encoder(cache_dir=str(tmp_path), seed=5).eval()
    reader.load_state_dict(writer.state_dict())
    counter = ForwardCounter(reader.lang_encoder)
    torch.testing.assert_close(reader.embed_vocabulary(VOCAB, train=False), expected, atol=0, rtol=0)
    assert counter.calls == 0  # loaded from disk

    other_weights = make_encoder(cache_dir=str(tmp_path), seed=6).eval()
    assert not torch.allclose(other_weights.embed_vocabulary(VOCAB, train=False), expected)
    assert len(list(tmp_path.glob("text_embeddings_*.pt"))) == 2  # keyed by the weights

    files[0].write_bytes(b"not a checkpoint")
    fresh = make_encoder(cache_dir=str(tmp_path)).eval()
    with caplog.at_level("WARNING"):
        torch.testing.assert_close(fresh.embed_vocabulary(VOCAB, train=False), expected, atol=1e-6, rtol=0)
    assert "unreadable" in caplog.text
    assert torch.load(files[0], weights_only=True)["names"] == list(VOCAB.names)  # rewritten


def test_empty_or_wrong_vocabulary_is_a_clear_error():
    encoder = make_encoder()
    with pytest.raises(ValueError, match="empty vocabulary"):
        encoder.embed_names([], train=False)
    with pytest.raises(ValueError, match="empty vocabulary"):
        encoder.embed_names((), train=True)
    with pytest.raises(TypeError, match="Vocabulary"):
        encoder.embed_vocabulary(["cat"], train=False)


def test_over_long_name_is_truncated_with_a_warning():
    encoder = make_encoder().eval()
    long_name = " ".join(["giraffe"] * 40)
    with pytest.warns(UserWarning, match="truncated"):
        embeddings = encoder.embed_names([long_name, "cat"], train=False)
    assert embeddings.shape == (2, DIM) and torch.isfinite(embeddings).all()


def test_similarity_is_scaled_cosine():
    encoder = make_encoder()
    with torch.no_grad():
        encoder.logit_scale.fill_(2.0)
    visual = torch.randn(2, 7, DIM)
    text = torch.nn.functional.normalize(torch.randn(5, DIM), dim=-1)
    logits = encoder.similarity(visual, text)
    assert logits.shape == (2, 7, 5)
    expected = torch.exp(torch.tensor(2.0)) * torch.einsum(
        "bqd,kd->bqk", torch.nn.functional.normalize(visual, dim=-1), text
    )
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
    logits.sum().backward()
    assert encoder.logit_scale.grad is not None


def test_from_config_and_config_errors():
    cfg = get_cfg()
    cfg.MODEL.TEXT.CONTEXT_LENGTH, cfg.MODEL.TEXT.WIDTH, cfg.MODEL.TEXT.LAYERS, cfg.MODEL.TEXT.HEADS = 18, 32, 1, 4
    cfg.MODEL.DIM_PROJ = 24
    cfg.DATASETS.CLASS_NAME_NORMALISATION = "reference"
    encoder = LanguageEncoder(cfg)
    assert isinstance(encoder.lang_encoder, ClipTextTransformer)
    assert encoder.lang_proj.shape == (32, 24) and encoder.logit_scale.item() == 1.0
    assert (encoder.train_mode, encoder.eval_mode) == ("reference-train", "reference-eval")
    assert encoder.lang_encoder.positional_embedding.shape == (18, 32)
    assert encoder.embed_vocabulary(VOCAB, train=False).shape == (5, 24)

    cfg.MODEL.TEXT.ENCODER = "bert"
    with pytest.raises(ValueError, match="MODEL.TEXT.ENCODER"):
        LanguageEncoder(cfg)
    cfg.MODEL.TEXT.ENCODER = "clip"
    cfg.DATASETS.CLASS_NAME_NORMALISATION = "sloppy"
    with pytest.raises(ValueError, match="CLASS_NAME_NORMALISATION"):
        LanguageEncoder(cfg)


def test_reference_detection_training_names_keep_their_words():
    """The official code rewrites "a-b" as "b a" for its COCO training names only, not for Objects365 ones."""
    encoder = make_encoder("reference").train()
    names = ("Hot-air balloon", "wall-brick")
    seg, _ = encoder.training_prompts(names, TrainingDraws(torch.Generator().manual_seed(0)), "seg")
    det, _ = encoder.training_prompts(names, TrainingDraws(torch.Generator().manual_seed(0)), "det")
    assert "air balloon Hot" in seg[0] and "brick wall" in seg[1]
    assert "Hot-air balloon" in det[0] and "wall-brick" in det[1]
    consistent = make_encoder("consistent").train()
    det, _ = consistent.training_prompts(names, TrainingDraws(torch.Generator().manual_seed(0)), "det")
    assert "air balloon Hot" in det[0] and "brick wall" in det[1]
