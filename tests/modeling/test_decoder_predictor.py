"""The OpenSeeD predictor: query layout, task behaviour, conditioned queries, detaching, parameter names."""

import pytest
import torch
from torch import nn

from openseed.config import get_cfg
from openseed.modeling.decoder import BoxPrompts, OpenSeeDDecoder
from tests.refdata_utils import official_keys

NUM_FG, NUM_BG, LAYERS, HIDDEN, DIM_PROJ = 12, 5, 2, 32, 16


class StubTextEncoder(nn.Module):
    """Stand-in for `LanguageEncoder.similarity` (the contract): exp(logit_scale)·normalize(visual)·textᵀ."""

    def __init__(self):
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor(1.0))

    def similarity(self, visual, text):
        visual = visual / (visual.norm(dim=-1, keepdim=True) + 1e-7)
        return self.logit_scale.exp() * visual @ text.t()


def make_decoder(**overrides):
    args = dict(
        lang_encoder=StubTextEncoder(), in_channels=HIDDEN, hidden_dim=HIDDEN, dim_proj=DIM_PROJ, mask_dim=HIDDEN,
        num_queries=NUM_FG, num_queries_test=NUM_FG, num_background_queries=NUM_BG, nheads=4, dim_feedforward=64,
        dropout=0.0, dec_layers=LAYERS, dec_n_points=2, num_feature_levels=3, dn="seg", dn_num=12,
        dn_noise_scale=0.4, initial_pred=True, detach_background_queries=True, o365_mask_assist=False,
    )
    args.update(overrides)
    torch.manual_seed(0)
    return OpenSeeDDecoder(**args)


@pytest.fixture
def inputs():
    gen = torch.Generator().manual_seed(3)
    features = [torch.randn(2, HIDDEN, s, s, generator=gen) for s in (8, 4, 2)]
    mask_features = torch.randn(2, HIDDEN, 16, 16, generator=gen)
    text = nn.functional.normalize(torch.randn(6, DIM_PROJ, generator=gen), dim=-1)
    targets = [
        {"labels": torch.tensor([0, 4, 2]), "boxes": torch.tensor([[0.5, 0.5, 0.3, 0.2], [0.2, 0.3, 0.1, 0.1],
                                                                   [0.7, 0.6, 0.2, 0.4]])},
        {"labels": torch.tensor([5]), "boxes": torch.tensor([[0.4, 0.6, 0.2, 0.2]])},
    ]
    return features, mask_features, text, targets


def test_eval_seg_layout(inputs):
    features, mask_features, text, _ = inputs
    decoder = make_decoder().eval()
    with torch.no_grad():
        out = decoder(features, mask_features, text)
    q = NUM_FG + NUM_BG
    assert out["pred_logits"].shape == (2, q, 6) and out["pred_boxes"].shape == (2, q, 4)
    assert out["pred_masks"].shape == (2, q, 16, 16)
    assert len(out["aux_outputs"]) == LAYERS
    assert all(set(aux) == {"pred_logits", "pred_boxes"} for aux in out["aux_outputs"])  # masks: last layer only
    assert out["interm_outputs"]["pred_logits"].shape == (2, q, 6) and "pred_masks" not in out["interm_outputs"]
    assert out["num_foreground"] == NUM_FG and out["dn_outputs"] is None and out["dn_meta"] is None
    # [fg ; bg]: the initial boxes of the background slots are the learnable `query_embed`
    initial_bg = out["aux_outputs"][0]["pred_boxes"][:, NUM_FG:]
    assert torch.allclose(initial_bg, decoder.query_embed.weight.sigmoid().expand(2, -1, -1))
    assert torch.allclose(out["interm_outputs"]["pred_boxes"][:, NUM_FG:], initial_bg)
    assert ((out["pred_boxes"] >= 0) & (out["pred_boxes"] <= 1)).all()


def test_masks_are_the_einsum_of_mask_embeddings_and_mask_features(inputs):
    features, mask_features, text, _ = inputs
    decoder = make_decoder().eval()
    queries = torch.randn(2, 7, HIDDEN)
    logits, masks = decoder.prediction_heads(queries, mask_features, text, with_masks=True)
    embedded = decoder.mask_embed(decoder.decoder_norm(queries))
    assert torch.allclose(masks[1, 3], (embedded[1, 3][:, None, None] * mask_features[1]).sum(0), atol=1e-5)
    assert logits.shape == (2, 7, 6)


def test_det_drops_background_from_decoder_outputs_only(inputs):
    features, mask_features, text, _ = inputs
    decoder = make_decoder().eval()
    with torch.no_grad():
        seg = decoder(features, mask_features, text, task="seg")
        det = decoder(features, mask_features, text, task="det")
    assert det["pred_logits"].shape == (2, NUM_FG, 6) and "pred_masks" not in det
    assert all(aux["pred_logits"].shape[1] == NUM_FG and "pred_masks" not in aux for aux in det["aux_outputs"])
    assert det["interm_outputs"]["pred_logits"].shape[1] == NUM_FG + NUM_BG
    assert torch.allclose(det["pred_logits"], seg["pred_logits"][:, :NUM_FG], atol=1e-6)
    assert torch.allclose(det["pred_boxes"], seg["pred_boxes"][:, :NUM_FG], atol=1e-6)


def test_training_denoising_outputs_and_isolation(inputs):
    features, mask_features, text, targets = inputs
    decoder = make_decoder().train()
    out = decoder(features, mask_features, text, targets=targets, task="seg")
    assert out["dn_meta"] == {"num_groups": 4, "group_size": 3}
    dn = out["dn_outputs"]
    assert dn["pred_logits"].shape == (2, 12, 6) and dn["pred_masks"].shape == (2, 12, 16, 16)
    assert len(dn["aux_outputs"]) == LAYERS and all("pred_masks" in aux for aux in dn["aux_outputs"])
    assert out["pred_logits"].shape == (2, NUM_FG + NUM_BG, 6)
    assert all("pred_masks" in aux for aux in out["aux_outputs"]) and "pred_masks" in out["interm_outputs"]
    # matching queries cannot see the denoising queries: same outputs as a decoder without DN
    plain = make_decoder(dn="no").train()
    plain.load_state_dict(decoder.state_dict())
    reference = plain(features, mask_features, text, targets=targets, task="seg")
    assert reference["dn_outputs"] is None
    assert torch.allclose(out["pred_logits"], reference["pred_logits"], atol=1e-5)
    assert torch.allclose(out["pred_masks"], reference["pred_masks"], atol=1e-4)


def test_training_det_batch(inputs):
    features, mask_features, text, targets = inputs
    out = make_decoder().train()(features, mask_features, text, targets=targets, task="det")
    assert out["pred_logits"].shape == (2, NUM_FG, 6) and "pred_masks" not in out
    assert out["interm_outputs"]["pred_logits"].shape == (2, NUM_FG + NUM_BG, 6)
    assert out["dn_outputs"]["pred_logits"].shape == (2, 12, 6) and "pred_masks" not in out["dn_outputs"]
    assert "mask_assist" not in out


def test_mask_assistance_group(inputs):
    features, mask_features, text, targets = inputs
    out = make_decoder(o365_mask_assist=True).train()(features, mask_features, text, targets=targets, task="det")
    assist = out["mask_assist"]
    assert assist["pred_masks"].shape == (2, 3, 16, 16)
    assert torch.equal(assist["valid"], torch.tensor([[True, True, True], [True, False, False]]))
    assert out["dn_meta"] == {"num_groups": 4, "group_size": 3} and out["dn_outputs"]["pred_logits"].shape[1] == 12
    assert out["pred_masks"].shape == (2, NUM_FG, 16, 16)  # the criterion matches against pseudo-masks
    seg = make_decoder(o365_mask_assist=True).train()(features, mask_features, text, targets=targets, task="seg")
    assert "mask_assist" not in seg


def test_background_queries_are_detached_from_the_decoder(inputs):
    features, mask_features, text, targets = inputs
    decoder = make_decoder(dn="no").train()
    decoder(features, mask_features, text, targets=targets)["pred_logits"].sum().backward()
    assert decoder.query_feat.weight.grad is None and decoder.enc_output.weight.grad is None
    decoder.zero_grad(set_to_none=True)
    decoder(features, mask_features, text, targets=targets)["interm_outputs"]["pred_logits"].sum().backward()
    assert decoder.query_feat.weight.grad.abs().sum() > 0 and decoder.enc_output.weight.grad.abs().sum() > 0

    attached = make_decoder(dn="no", detach_background_queries=False).train()
    attached(features, mask_features, text, targets=targets)["pred_logits"].sum().backward()
    assert attached.query_feat.weight.grad.abs().sum() > 0
    assert attached.enc_output.weight.grad is None or (attached.enc_output.weight.grad == 0).all()


def test_box_prompts(inputs):
    features, mask_features, text, _ = inputs
    decoder = make_decoder().eval()
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.3], [0.25, 0.25, 0.1, 0.1]], [[0.6, 0.4, 0.3, 0.3], [0, 0, 0, 0]]])
    prompts = BoxPrompts(boxes, torch.tensor([[True, True], [True, False]]), torch.randn(2, 2, DIM_PROJ))
    with torch.no_grad():
        plain = decoder(features, mask_features, text, task="det")
        prompted = decoder(features, mask_features, text, task="det", box_prompts=prompts)
    group = prompted["prompt_outputs"]
    assert group["pred_masks"].shape == (2, 2, 16, 16) and group["pred_logits"].shape == (2, 2, 6)
    assert torch.equal(group["valid"], prompts.valid)
    # the zero-initialised last box layer leaves the prompt boxes unchanged
    assert torch.allclose(group["pred_boxes"][0], boxes[0], atol=1e-5)
    # prompts never change the regular outputs
    assert torch.allclose(prompted["pred_logits"], plain["pred_logits"], atol=1e-5)
    assert torch.allclose(prompted["pred_boxes"], plain["pred_boxes"], atol=1e-6)
    with pytest.raises(ValueError, match="inference"):
        decoder.train()(features, mask_features, text, targets=[], box_prompts=prompts)


def test_plain_decoder_has_no_background_queries(inputs):
    features, mask_features, text, _ = inputs
    decoder = make_decoder(num_background_queries=0).eval()
    assert not hasattr(decoder, "query_feat") and not hasattr(decoder, "query_embed")
    with torch.no_grad():
        out = decoder(features, mask_features, text, task="det")
    assert out["pred_logits"].shape == (2, NUM_FG, 6)


def test_bad_inputs(inputs):
    features, mask_features, text, _ = inputs
    decoder = make_decoder()
    with pytest.raises(ValueError, match="feature levels"):
        decoder.eval()(features[:2], mask_features, text)
    with pytest.raises(ValueError, match="task"):
        decoder.eval()(features, mask_features, text, task="panoptic")
    with pytest.raises(ValueError, match="targets"):
        decoder.train()(features, mask_features, text)
    with pytest.raises(ValueError, match="HIDDEN_DIM"):
        make_decoder(in_channels=HIDDEN * 2)
    with pytest.raises(ValueError, match="DN"):
        make_decoder(dn="label")


def test_shared_box_head_and_norm_aliases():
    decoder = make_decoder()
    state = decoder.state_dict()
    for i in range(LAYERS):
        assert state[f"bbox_embed.{i}.layers.2.weight"].data_ptr() == state["_bbox_embed.layers.2.weight"].data_ptr()
        assert state[f"decoder.bbox_embed.{i}.layers.0.bias"].data_ptr() == state["_bbox_embed.layers.0.bias"].data_ptr()
    assert state["decoder.norm.weight"].data_ptr() == state["decoder_norm.weight"].data_ptr()
    assert (state["_bbox_embed.layers.2.weight"] == 0).all() and (state["_bbox_embed.layers.2.bias"] == 0).all()


@pytest.mark.parametrize("decoupled", [True, False])
def test_parameter_names_and_shapes_match_the_official_predictor(refdata, decoupled):
    cfg = get_cfg()
    cfg.MODEL.DECODER.DECOUPLED = decoupled
    decoder = OpenSeeDDecoder(cfg, in_channels=256, lang_encoder=nn.Module())
    ours = {k: tuple(v.shape) for k, v in decoder.state_dict().items()}
    prefix = "sem_seg_head.predictor."
    official = {k[len(prefix):]: shape for k, shape, _ in official_keys(refdata, decoupled)
                if k.startswith(prefix) and not k.startswith(prefix + "lang_encoder.")}
    assert ours == official
