"""CLIP tokenizer built offline from open_clip's BPE file: ids, padding, truncation, text cleaning."""

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from open_clip.tokenizer import SimpleTokenizer

from openseed.modeling.text.prompts import PROMPT_TEMPLATES
from openseed.modeling.text.tokenizer import build_clip_tokenizer, clip_bpe_path, clip_tokenizer

BOS, EOS = 49406, 49407


@pytest.fixture(scope="module")
def tokenizer():
    return clip_tokenizer(77)


def test_special_tokens_and_vocabulary_size():
    hf = build_clip_tokenizer()
    assert len(hf) == 49408
    assert (hf.bos_token_id, hf.eos_token_id, hf.pad_token_id) == (BOS, EOS, EOS)


def test_known_ids_padding_and_mask(tokenizer):
    ids, mask = tokenizer(["a photo of a cat.", "dog"])
    assert ids.shape == mask.shape == (2, 77) and ids.dtype == torch.int64
    # Well-known CLIP ids: a=320, photo=1125, of=539, cat=2368, "."=269, dog=1929.
    assert ids[0, :8].tolist() == [BOS, 320, 1125, 539, 320, 2368, 269, EOS]
    assert ids[1, :3].tolist() == [BOS, 1929, EOS]
    assert (ids[0, 8:] == EOS).all() and (ids[1, 3:] == EOS).all()  # padded with end-of-text
    assert mask.sum(dim=1).tolist() == [8, 3]
    assert int(ids[0].argmax()) == 7  # the first end-of-text is the pooling position


def test_matches_open_clip_simple_tokenizer_on_prompts(tokenizer):
    """An independent implementation of the same BPE (OpenAI's, in open_clip) gives the same ids."""
    reference = SimpleTokenizer()
    names = ["person", "traffic light", "hair drier", "wall-brick", "playingfield", "teddy bear", "moniter/tv"]
    prompts = [t.format(n) for n in names for t in PROMPT_TEMPLATES]
    ids, mask = tokenizer(prompts)
    for prompt, row, row_mask in zip(prompts, ids, mask):
        expected = [BOS, *reference.encode(prompt), EOS]
        assert row[: int(row_mask.sum())].tolist() == expected, prompt


def test_over_long_text_is_truncated_with_warning_and_keeps_end_token(tokenizer):
    text = " ".join(["giraffe"] * 100)
    with pytest.warns(UserWarning, match="truncated"):
        ids, mask = tokenizer([text, "cat"])
    assert ids.shape == (2, 77) and int(mask[0].sum()) == 77
    assert ids[0, 0] == BOS and ids[0, -1] == EOS
    assert int(ids[0].argmax()) == 76
    # open_clip's tokenizer (the OpenAI convention) truncates the same way: 75 word tokens, then end-of-text.
    assert ids[0].tolist() == SimpleTokenizer()([text], context_length=77)[0].tolist()


def test_short_text_does_not_warn(tokenizer, recwarn):
    tokenizer(["a photo of a cat."])
    assert not [w for w in recwarn if "truncated" in str(w.message)]


def test_text_is_cleaned_with_ftfy_like_the_official_tokenizer(tokenizer):
    ids, _ = tokenizer(["\ufb01sh", "fish", "caf\u00e9  CR\u00c8ME", "café crème"])
    assert ids[0].tolist() == ids[1].tolist()  # the "fi" ligature is fixed
    assert ids[2].tolist() == ids[3].tolist()  # whitespace and case


def test_missing_bpe_file_is_a_clear_error(tmp_path):
    missing = tmp_path / "nope.txt.gz"
    with pytest.raises(FileNotFoundError):
        build_clip_tokenizer(str(missing))
    assert clip_bpe_path().name == "bpe_simple_vocab_16e6.txt.gz"


def test_context_length_must_hold_start_and_end():
    with pytest.raises(ValueError, match="context length"):
        clip_tokenizer(1)


def test_threads_sharing_the_tokenizer_get_their_own_padding_and_truncation():
    """Two context lengths over the one shared HF tokenizer, 8 threads at once: each call equals its sequential
    result (unlocked, the backend's padding state leaked between threads: unpadded batches, "Unable to create tensor")."""
    tokenizers = [clip_tokenizer(77), clip_tokenizer(6)]
    assert tokenizers[0].tokenizer is tokenizers[1].tokenizer
    batches = [[f"thing {index} number {step}", "object", "sky"] for index in range(8) for step in range(40)]
    expected = [tokenizers[index % 2](batch) for index, batch in enumerate(batches)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda index: tokenizers[index % 2](batches[index]), range(len(batches))))
    for (ids, mask), (expected_ids, expected_mask) in zip(results, expected):
        assert torch.equal(ids, expected_ids) and torch.equal(mask, expected_mask)
