"""CLIP-style text transformer: official parameter names, causal mask, EOS pooling, exact shortcuts, numerics."""

import pytest
import torch
from torch import nn

from openseed.modeling.text.clip_transformer import (
    ClipTextTransformer,
    FP32LayerNorm,
    _shared_prefix_lengths,
)
from openseed.modeling.text.prompts import PROMPT_TEMPLATES
from openseed.modeling.text.tokenizer import clip_tokenizer
from tests.refdata_utils import official_keys

CONTEXT = 16
NAMES = ["cat", "traffic light", "baseball glove", "dog", "hair drier", "wall brick", "giraffe", "playingfield"]


def tiny(causal=True, **kwargs) -> ClipTextTransformer:
    torch.manual_seed(0)
    return ClipTextTransformer(context_length=CONTEXT, width=32, layers=2, heads=4, causal=causal, **kwargs)


def full_context_pooled(model, input_ids, attention_mask=None):
    """The official computation: every position of the context, then the state at the largest token id."""
    hidden = model.hidden_states(input_ids, attention_mask)
    return hidden[torch.arange(len(input_ids)), input_ids.argmax(dim=-1)]


@pytest.fixture(scope="module")
def tokens():
    return clip_tokenizer(CONTEXT)([t.format(n) for n in NAMES for t in PROMPT_TEMPLATES[:6]])


def test_parameter_names_and_shapes_equal_official_keys(refdata):
    prefix = "sem_seg_head.predictor.lang_encoder.lang_encoder."
    official = {k[len(prefix) :]: shape for k, shape, _ in official_keys(refdata) if k.startswith(prefix)}
    model = ClipTextTransformer(context_length=77, width=512, layers=12, heads=8)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == official


def test_causal_mask_hides_later_tokens():
    model = tiny().eval()
    ids = torch.randint(0, 49406, (1, CONTEXT))
    changed = ids.clone()
    changed[0, 9] = (changed[0, 9] + 1) % 49406
    with torch.no_grad():
        a, b = model.hidden_states(ids), model.hidden_states(changed)
    assert torch.equal(a[:, :9], b[:, :9])
    assert (a[:, 9:] - b[:, 9:]).abs().amax() > 1e-3

    bidirectional = tiny(causal=False).eval()
    with torch.no_grad():
        a, b = bidirectional.hidden_states(ids), bidirectional.hidden_states(changed)
    assert (a[:, :9] - b[:, :9]).abs().amax() > 1e-3


def test_pooling_takes_the_first_end_token(tokens):
    model = tiny().eval()
    ids, mask = tokens
    with torch.no_grad():
        pooled = model(ids, mask)
        hidden = model.hidden_states(ids, mask)
    eos = mask.sum(dim=1) - 1  # the first end-of-text token (padding repeats it)
    assert torch.equal(ids.argmax(dim=-1), eos)
    torch.testing.assert_close(pooled, hidden[torch.arange(len(ids)), eos], atol=1e-5, rtol=0)
    assert not torch.allclose(pooled, hidden[:, -1], atol=1e-3)


@pytest.mark.parametrize("causal", [True, False])
def test_trimmed_batch_equals_full_context(tokens, causal):
    model = tiny(causal=causal, max_tokens_per_chunk=40).eval()
    ids, mask = tokens
    with torch.no_grad():
        torch.testing.assert_close(model(ids, mask), full_context_pooled(model, ids, mask), atol=1e-5, rtol=0)


def test_template_groups_share_leading_tokens_exactly_with_gradients():
    """Prompts grouped by template: each template's words are encoded once, the rest in length chunks (exact)."""
    templates = ["a photo of the hard to see {}.", "{}.", "a {} in a video game."]
    names = ["cat", "traffic light", "baseball glove", "hair drier"]
    ids, mask = clip_tokenizer(CONTEXT)([t.format(n) for t in templates for n in names])
    groups = torch.arange(3).repeat_interleave(4)
    prefix = _shared_prefix_lengths(ids, ids.argmax(-1) + 1, groups)
    assert prefix.tolist() == [8, 1, 2]  # start token + template words before the name

    model = tiny(max_tokens_per_chunk=12)  # several chunks
    weights = torch.randn(len(ids), 32)  # a loss with non-trivial gradients through ln_final
    fast = model(ids, mask, groups=groups)
    (fast * weights).sum().backward()
    fast_grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    slow = full_context_pooled(model, ids, mask)
    (slow * weights).sum().backward()
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=0)
    for name, param in model.named_parameters():
        torch.testing.assert_close(fast_grads[name], param.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_sequences_without_a_common_start_are_encoded_exactly():
    model = tiny().eval()
    ids = torch.randint(0, 49000, (6, CONTEXT))
    ids[:, 5:] = 49407
    ids[2, 3:] = 49407
    with torch.no_grad():
        torch.testing.assert_close(model(ids), full_context_pooled(model, ids), atol=1e-5, rtol=0)


def test_activation_checkpoint_gives_same_values_and_gradients(tokens):
    ids, mask = tokens
    plain, checkpointed = tiny(), tiny(activation_checkpoint=True)
    results = []
    for model in (plain, checkpointed):
        model.train()
        out = model(ids, mask)
        (out * torch.linspace(-1, 1, 32)).sum().backward()
        results.append((out, model.resblocks[0].mlp.c_fc.weight.grad))
    torch.testing.assert_close(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1])


def test_layer_norm_is_tf_style_in_float32():
    norm = FP32LayerNorm(8)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-1, 1)
    x = 0.5e-4 + 1e-4 * torch.randn(4, 8)  # variance ~1e-8: an eps of 1e-5 would visibly shrink the output
    expected = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + 1e-12)
    expected = norm.weight * expected + norm.bias
    torch.testing.assert_close(norm(x), expected, atol=1e-5, rtol=0)
    assert (norm(x) - nn.functional.layer_norm(x, (8,), norm.weight, norm.bias, 1e-5)).abs().amax() > 0.1
    half = x.to(torch.bfloat16)
    out = norm(half)
    assert out.dtype == torch.bfloat16
    reference = nn.functional.layer_norm(half.float(), (8,), norm.weight, norm.bias, 1e-12).to(torch.bfloat16)
    assert torch.equal(out, reference)


def test_sequences_longer_than_the_context_are_rejected():
    with pytest.raises(ValueError, match="context length"):
        tiny().hidden_states(torch.zeros(1, CONTEXT + 1, dtype=torch.long))
    with pytest.raises(ValueError, match="context length"):
        tiny()(torch.zeros(1, CONTEXT + 1, dtype=torch.long))
