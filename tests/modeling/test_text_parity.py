"""Official parity: eval-time text embeddings of the 143 parity names (81-template ensemble) within 1e-4."""

import time

import pytest
import torch

from openseed.modeling.text import ClipTextTransformer, LanguageEncoder, clip_tokenizer
from openseed.vocabulary import Vocabulary
from tests.refdata_utils import official_outputs, official_substate, parity_vocabulary

pytestmark = pytest.mark.slow


def test_text_embeddings_match_official(refdata):
    vocab_data = parity_vocabulary(refdata)
    assert vocab_data["n_prompt_templates"] == 81
    encoder = LanguageEncoder(
        lang_encoder=ClipTextTransformer(context_length=77, width=512, layers=12, heads=8),
        tokenizer=clip_tokenizer(77),
        dim_proj=512,
        class_name_normalisation="reference",  # evaluation uses "reference-eval", as the official
    )
    encoder.load_state_dict(official_substate(refdata, "sem_seg_head.predictor.lang_encoder."), strict=True)
    encoder.eval()
    assert list(encoder.templates) == vocab_data["prompt_templates"]
    vocabulary = Vocabulary(tuple(vocab_data["names"]), tuple(vocab_data["is_thing"]))

    start = time.perf_counter()
    embeddings = encoder.embed_vocabulary(vocabulary, train=False)
    print(f"143 names x 81 templates: {time.perf_counter() - start:.1f} s")

    expected = official_outputs(refdata)["text_embeddings"]
    assert embeddings.shape == expected.shape == (143, 512)
    error = (embeddings - expected.to(embeddings)).abs().amax(dim=1)
    worst = [(vocabulary.names[i], float(error[i])) for i in torch.argsort(error, descending=True)[:5]]
    assert float(error.max()) < 1e-4, f"largest differences: {worst}"
