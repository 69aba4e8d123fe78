"""Parameter-group rules (docs/official_behaviours.md §11.1): which parameters decay and which LR multiplier each one gets."""

from pathlib import Path

import pytest
import torch
from detectron2.modeling import build_model
from torch import nn

from openseed.config import get_cfg, setup_cfg
from openseed.engine.optimizer import build_optimizer, clip_full_model_gradients, is_norm_module, param_rules


class ClipStyleLayerNorm(nn.Module):
    """Like the official text encoder's LayerNorm: its own class, not a torch.nn.LayerNorm subclass."""

    def __init__(self, width):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.bias = nn.Parameter(torch.zeros(width))


class MiniOpenSeeD(nn.Module):
    """The parameter kinds of OpenSeeD under their official names (docs/official_behaviours.md §12.3), a few of each."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.patch_embed = nn.Conv2d(3, 4, 2)
        self.backbone.absolute_pos_embed = nn.Parameter(torch.zeros(1, 4, 2, 2))
        self.backbone.attn = nn.Module()
        self.backbone.attn.relative_position_bias_table = nn.Parameter(torch.zeros(9, 2))
        self.backbone.attn.qkv = nn.Linear(4, 12)
        self.backbone.norm0 = nn.LayerNorm(4)

        head = self.sem_seg_head = nn.Module()
        head.pixel_decoder = nn.Module()
        head.pixel_decoder.level_embed = nn.Parameter(torch.zeros(3, 4))
        head.pixel_decoder.input_proj = nn.Sequential(nn.Conv2d(4, 4, 1), nn.GroupNorm(2, 4))
        predictor = head.predictor = nn.Module()
        predictor.query_feat = nn.Embedding(5, 4)
        predictor.query_embed = nn.Embedding(5, 4)
        predictor.class_embed = nn.Parameter(torch.zeros(4, 6))
        predictor.lang_mapper = nn.Parameter(torch.zeros(6, 4))
        predictor.decoder_norm = nn.LayerNorm(4)
        predictor.decoder = nn.Module()
        predictor.decoder.norm = predictor.decoder_norm  # shared, stored under two names
        predictor._bbox_embed = nn.Linear(4, 4)
        predictor.bbox_embed = nn.ModuleList([predictor._bbox_embed, predictor._bbox_embed])
        text = predictor.lang_encoder = nn.Module()
        text.lang_encoder = nn.Module()
        text.lang_encoder.token_embedding = nn.Embedding(10, 6)
        text.lang_encoder.positional_embedding = nn.Parameter(torch.zeros(7, 6))
        text.lang_encoder.ln_final = ClipStyleLayerNorm(6)
        text.lang_encoder.c_fc = nn.Linear(6, 6)
        text.lang_proj = nn.Parameter(torch.zeros(6, 6))
        text.logit_scale = nn.Parameter(torch.tensor(2.0))
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)


BB, TX = 0.1, 0.1
P, T = "sem_seg_head.predictor.", "sem_seg_head.predictor.lang_encoder."
# name -> (lr multiplier, clean-rule weight decay, reference-quirk weight decay), worked out from the table of docs/official_behaviours.md §11.1.
EXPECTED = {
    "backbone.absolute_pos_embed": (BB, 0.0, 0.0),
    "backbone.patch_embed.weight": (BB, 0.05, 0.05),
    "backbone.patch_embed.bias": (BB, 0.0, 0.05),
    "backbone.attn.relative_position_bias_table": (BB, 0.0, 0.0),
    "backbone.attn.qkv.weight": (BB, 0.05, 0.05),
    "backbone.attn.qkv.bias": (BB, 0.0, 0.05),
    "backbone.norm0.weight": (BB, 0.0, 0.0),
    "backbone.norm0.bias": (BB, 0.0, 0.0),
    "sem_seg_head.pixel_decoder.level_embed": (1.0, 0.0, 0.05),
    "sem_seg_head.pixel_decoder.input_proj.0.weight": (1.0, 0.05, 0.05),
    "sem_seg_head.pixel_decoder.input_proj.0.bias": (1.0, 0.0, 0.05),
    "sem_seg_head.pixel_decoder.input_proj.1.weight": (1.0, 0.0, 0.0),
    "sem_seg_head.pixel_decoder.input_proj.1.bias": (1.0, 0.0, 0.0),
    P + "class_embed": (1.0, 0.05, 0.05),
    P + "lang_mapper": (1.0, 0.05, 0.05),
    P + "query_feat.weight": (1.0, 0.0, 0.0),
    P + "query_embed.weight": (1.0, 0.0, 0.0),
    P + "decoder_norm.weight": (1.0, 0.0, 0.0),
    P + "decoder_norm.bias": (1.0, 0.0, 0.0),
    P + "_bbox_embed.weight": (1.0, 0.05, 0.05),
    P + "_bbox_embed.bias": (1.0, 0.0, 0.05),
    T + "lang_encoder.token_embedding.weight": (TX, 0.0, 0.0),
    T + "lang_encoder.positional_embedding": (TX, 0.0, 0.05),
    T + "lang_encoder.ln_final.weight": (TX, 0.0, 0.05),
    T + "lang_encoder.ln_final.bias": (TX, 0.0, 0.05),
    T + "lang_encoder.c_fc.weight": (TX, 0.05, 0.05),
    T + "lang_encoder.c_fc.bias": (TX, 0.0, 0.05),
    T + "lang_proj": (TX, 0.05, 0.05),
    T + "logit_scale": (TX, 0.0, 0.05),
}


def _rules(model, quirks):
    return param_rules(
        model,
        weight_decay=0.05,
        backbone_multiplier=BB,
        text_encoder_multiplier=TX,
        reference_quirks=quirks,
    )


@pytest.mark.parametrize("quirks", [False, True])
def test_rules_table(quirks):
    rules = _rules(MiniOpenSeeD(), quirks)
    got = {r.name: (r.lr_multiplier, r.weight_decay) for r in rules}
    expected = {name: (lr, wd_quirk if quirks else wd_clean) for name, (lr, wd_clean, wd_quirk) in EXPECTED.items()}
    # Shared parameters appear once (under their first name); frozen parameters not at all.
    assert sorted(got) == sorted(expected)
    for name in expected:
        assert got[name] == pytest.approx(expected[name]), name


def test_clean_rules_invariants():
    """Independent of the table: every 1-d parameter and every norm/embedding parameter is undecayed."""
    model = MiniOpenSeeD()
    params = dict(model.named_parameters())
    for rule in _rules(model, quirks=False):
        param = params[rule.name]
        module = model.get_submodule(rule.name.rpartition(".")[0])
        if param.ndim <= 1 or isinstance(module, (nn.Embedding, nn.LayerNorm, nn.GroupNorm, ClipStyleLayerNorm)):
            assert rule.weight_decay == 0.0, rule
        expected_lr = BB if rule.name.startswith("backbone.") else TX if ".lang_encoder." in rule.name else 1.0
        assert rule.lr_multiplier == expected_lr, rule


def test_build_optimizer_groups_follow_rules():
    cfg = get_cfg()
    cfg.SOLVER.BASE_LR = 2e-4
    model = MiniOpenSeeD()
    optimizer = build_optimizer(cfg, model)
    assert isinstance(optimizer, torch.optim.AdamW)
    names = {id(p): n for n, p in model.named_parameters()}
    seen = []
    for group in optimizer.param_groups:
        for param in group["params"]:
            lr_multiplier, decay, _ = EXPECTED[names[id(param)]]
            assert group["lr"] == pytest.approx(2e-4 * lr_multiplier)
            assert group["weight_decay"] == decay
            seen.append(names[id(param)])
    assert sorted(seen) == sorted(EXPECTED)
    # one group per distinct (lr, weight decay): {x0.1 (backbone and text), x1} x {decay, no decay}
    assert len(optimizer.param_groups) == 4


def test_unknown_optimizer_is_named():
    cfg = get_cfg()
    cfg.SOLVER.OPTIMIZER = "LAMB"
    with pytest.raises(ValueError, match="SOLVER.OPTIMIZER"):
        build_optimizer(cfg, MiniOpenSeeD())


def test_full_model_clipping_scales_all_gradients_together():
    a, b = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(1))
    a.grad, b.grad = torch.tensor([3.0, 0.0]), torch.tensor([4.0])
    optimizer = torch.optim.SGD([{"params": [a]}, {"params": [b]}], lr=1.0)
    norm = clip_full_model_gradients(optimizer, max_norm=0.01)
    assert norm.item() == pytest.approx(5.0)
    torch.testing.assert_close(a.grad, torch.tensor([0.006, 0.0]), rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(b.grad, torch.tensor([0.008]), rtol=1e-4, atol=1e-7)


@pytest.fixture(scope="module")
def tiny_model():
    return build_model(setup_cfg(str(Path(__file__).resolve().parents[2] / "configs/tiny/tiny_decoupled.yaml")))


@pytest.mark.parametrize("quirks", [False, True])
def test_rules_on_the_real_model(tiny_model, quirks):
    model = tiny_model
    rules = {r.name: r for r in _rules(model, quirks)}
    params = dict(model.named_parameters())
    unique = {id(p) for p in model.parameters() if p.requires_grad}
    assert len(rules) == len(unique)  # every trainable tensor exactly once
    text_norms = [n for n, m in model.named_modules() if ".lang_encoder." in n and is_norm_module(m)]
    assert text_norms  # the text encoder's own LayerNorm class is recognised as a norm
    for name, rule in rules.items():
        expected_lr = BB if name.startswith("backbone.") else TX if ".lang_encoder." in name else 1.0
        assert rule.lr_multiplier == expected_lr, name
        owner = name.rpartition(".")[0]
        if not quirks:
            tables = ("query_feat", "query_embed", "embedding", "level_embed", "pos_embed", "relative_position")
            if params[name].ndim <= 1 or owner in text_norms or any(t in name for t in tables):
                assert rule.weight_decay == 0.0, name
            else:
                assert rule.weight_decay == 0.05, name
        elif owner in text_norms or name.endswith(("level_embed", "positional_embedding", "logit_scale")):
            assert rule.weight_decay == 0.05, name  # reference quirks: decayed
    for name in ("sem_seg_head.predictor.query_feat.weight", "sem_seg_head.predictor.query_embed.weight"):
        assert rules[name].weight_decay == 0.0
