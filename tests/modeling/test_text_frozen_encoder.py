"""MODEL.TEXT.FREEZE_ENCODER: a fixed (pretrained) text transformer, a trained projection, features reused per prompt."""

import torch

from openseed.config import get_cfg
from openseed.engine.optimizer import param_rules
from openseed.modeling.text import LanguageEncoder
from openseed.modeling.text.prompts import PROMPT_TEMPLATES
from openseed.utils.random_draws import TrainingDraws
from openseed.vocabulary import Vocabulary

VOCAB = Vocabulary.from_names(["red circle", "blue square", "green star"])


def _encoder(freeze: bool) -> LanguageEncoder:
    cfg = get_cfg()
    cfg.MODEL.TEXT.ENCODER = "hf"
    cfg.MODEL.TEXT.FREEZE_ENCODER = freeze
    cfg.MODEL.DIM_PROJ = 32
    torch.manual_seed(0)
    return LanguageEncoder(cfg)


def test_only_the_projection_and_scale_train():
    encoder = _encoder(freeze=True).train()
    trainable = {name for name, p in encoder.named_parameters() if p.requires_grad}
    assert trainable == {"lang_proj", "logit_scale"}
    assert not encoder.lang_encoder.training  # no dropout in a frozen encoder
    assert [rule.name for rule in param_rules(encoder, weight_decay=0.05)] == ["lang_proj", "logit_scale"]
    embeddings = encoder.embed_vocabulary(VOCAB, train=True)
    (embeddings[:, 0].sum() + encoder.logit_scale).backward()
    assert encoder.lang_proj.grad is not None and encoder.lang_proj.grad.abs().sum() > 0
    assert all(p.grad is None for p in encoder.lang_encoder.parameters())
    unfrozen = _encoder(freeze=False).train()
    assert unfrozen.lang_encoder.training
    trainable = {name for name, p in unfrozen.lang_encoder.named_parameters() if p.requires_grad}
    unused_pooler = {name for name, _ in unfrozen.lang_encoder.named_parameters() if ".pooler." in name}
    assert unused_pooler and trainable == {name for name, _ in unfrozen.lang_encoder.named_parameters()} - unused_pooler


def test_features_are_computed_once_per_prompt_and_match_direct_encoding():
    encoder = _encoder(freeze=True).train()
    calls = []
    encoder.lang_encoder.register_forward_hook(lambda module, args, output: calls.append(args[0].shape[0]))
    generator = torch.Generator().manual_seed(0)
    first = encoder.embed_vocabulary(VOCAB, train=True, draws=TrainingDraws(generator))
    assert calls == [1, 1, 1]  # each new prompt on its own
    generator = torch.Generator().manual_seed(0)
    again = encoder.embed_vocabulary(VOCAB, train=True, draws=TrainingDraws(generator))  # same templates: nothing encoded
    assert calls == [1, 1, 1]
    torch.testing.assert_close(again, first)
    prompts, _ = encoder.training_prompts(VOCAB.names, TrainingDraws(torch.Generator().manual_seed(0)))
    direct = _encoder(freeze=False).eval()._encode_prompts(prompts)
    torch.testing.assert_close(first, direct, atol=1e-5, rtol=1e-5)

    encoder.load_state_dict(encoder.state_dict())  # new weights: the kept features are dropped
    encoder.embed_vocabulary(VOCAB, train=True, draws=TrainingDraws(torch.Generator().manual_seed(0)))
    assert calls == [1] * 6


def test_kept_features_do_not_depend_on_the_prompts_new_in_the_same_step():
    """A resumed run starts with an empty store and meets prompts in other company than the uninterrupted run; the
    features it keeps must be bit-identical (exact resume of the demo config). Encoded as one batch, "a photo of a
    red circle." gets other last bits with 24 prompts than with 4 (padding and batch size)."""
    prompts = [template.format(name) for template in PROMPT_TEMPLATES[:8] for name in ("red circle", "blue square", "sand")]
    all_at_once = _encoder(freeze=True).train()  # the same pretrained MiniLM in both
    a_few_first = _encoder(freeze=True).train()
    all_at_once._frozen_prompt_features(prompts)
    a_few_first._frozen_prompt_features(prompts[:4])
    a_few_first._frozen_prompt_features(prompts)
    for prompt in prompts:
        assert torch.equal(all_at_once._frozen_features[prompt], a_few_first._frozen_features[prompt]), prompt


def test_every_trainable_parameter_of_a_trained_hf_encoder_gets_a_gradient():
    """Multi-process (DDP) training fails on trainable parameters without gradients (MiniLM's unused pooler)."""
    encoder = _encoder(freeze=False).train()
    encoder.embed_vocabulary(VOCAB, train=True, draws=TrainingDraws(torch.Generator().manual_seed(0))).sum().backward()
    without_gradient = [name for name, p in encoder.lang_encoder.named_parameters() if p.requires_grad and p.grad is None]
    assert without_gradient == []
