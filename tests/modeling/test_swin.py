"""D2SwinTransformer: official key layout, window helpers by hand, shapes at odd sizes, drop path, checkpointing."""

import pytest
import torch
from detectron2.modeling import BACKBONE_REGISTRY, build_backbone

from openseed.config import get_cfg
from openseed.modeling.backbone.swin import (
    D2SwinTransformer,
    relative_position_index,
    shifted_window_mask,
    window_merge,
    window_partition,
)
from tests.refdata_utils import official_keys

SWIN_L = {"EMBED_DIM": 192, "NUM_HEADS": [6, 12, 24, 48], "WINDOW_SIZE": 12, "PRETRAIN_IMG_SIZE": 384}
NARROW = {"EMBED_DIM": 16, "NUM_HEADS": [1, 2, 4, 8], "DEPTHS": [2, 2, 2, 2]}  # fast stand-in where width is irrelevant


def swin_cfg(**swin):
    cfg = get_cfg()
    for key, value in swin.items():
        setattr(cfg.MODEL.SWIN, key, value)
    return cfg


def test_registered_and_built_from_config():
    assert BACKBONE_REGISTRY.get("D2SwinTransformer") is D2SwinTransformer
    backbone = build_backbone(swin_cfg(DEPTHS=[2, 2, 2, 2]))
    assert isinstance(backbone, D2SwinTransformer)
    assert backbone.size_divisibility == 32
    shapes = backbone.output_shape()
    assert {k: (v.channels, v.stride) for k, v in shapes.items()} == {
        "res2": (96, 4), "res3": (192, 8), "res4": (384, 16), "res5": (768, 32)}


def test_state_dict_keys_equal_official_backbone_keys(refdata):
    backbone = D2SwinTransformer(get_cfg())
    ours = {k: (tuple(v.shape), str(v.dtype).replace("torch.", "")) for k, v in backbone.state_dict().items()}
    official = {key[len("backbone."):]: (shape, dtype)
                for key, shape, dtype in official_keys(refdata) if key.startswith("backbone.")}
    assert ours == official


def test_relative_position_index_by_hand():
    # window 2: tokens (0,0),(0,1),(1,0),(1,1); index = (dy + 1) * 3 + (dx + 1), dy = y_i - y_j
    expected = torch.tensor([[4, 3, 1, 0], [5, 4, 2, 1], [7, 6, 4, 3], [8, 7, 5, 4]])
    assert torch.equal(relative_position_index(2), expected)
    assert relative_position_index(7).max() == 13 * 13 - 1


def test_shifted_window_mask_by_hand():
    mask = shifted_window_mask(4, 4, window_size=2, shift=1, device=torch.device("cpu"), dtype=torch.float32)
    assert mask.shape == (4, 4, 4)
    assert torch.equal(mask[0], torch.zeros(4, 4))  # top-left window lies in a single region
    # bottom-right window: its 4 pixels are in 4 different regions -> only the diagonal is attended
    assert torch.equal(mask[3], torch.full((4, 4), -100.0).fill_diagonal_(0.0))
    # top-right window: columns 2 and 3 are different bands, rows 0-1 the same band
    same_column = torch.tensor([[0.0, -100.0, 0.0, -100.0], [-100.0, 0.0, -100.0, 0.0]]).repeat(2, 1)
    assert torch.equal(mask[1], same_column)


def test_window_partition_round_trip():
    x = torch.randn(2, 6, 9, 5)
    windows = window_partition(x, 3)
    assert windows.shape == (2 * 2 * 3, 9, 5)
    assert torch.equal(windows[1].view(3, 3, 5), x[0, 0:3, 3:6])  # second window of the first image
    assert torch.equal(window_merge(windows, 3, 6, 9), x)


@pytest.mark.parametrize(("variant", "size"), [("tiny", (224, 352)), ("tiny", (100, 150)), ("large", (100, 150))])
def test_output_shapes_at_odd_sizes(variant, size):
    overrides = {"DEPTHS": [2, 2, 2, 2]} | (SWIN_L if variant == "large" else {})
    backbone = D2SwinTransformer(swin_cfg(**overrides)).eval()
    with torch.no_grad():
        out = backbone(torch.randn(1, 3, *size))
    h, w = size
    for name, spec in backbone.output_shape().items():
        stride = spec.stride
        assert out[name].shape == (1, spec.channels, -(-h // stride), -(-w // stride)), (name, variant)
        assert torch.isfinite(out[name]).all()


def test_out_features_subset_and_errors():
    backbone = D2SwinTransformer(swin_cfg(**NARROW, OUT_FEATURES=["res3", "res5"]))
    assert sorted(backbone.output_shape()) == ["res3", "res5"]
    assert not hasattr(backbone, "norm0") and hasattr(backbone, "norm3")
    assert sorted(backbone(torch.randn(1, 3, 64, 64))) == ["res3", "res5"]
    with pytest.raises(ValueError, match="OUT_FEATURES"):
        D2SwinTransformer(swin_cfg(OUT_FEATURES=["res6"]))
    with pytest.raises(ValueError, match="DEPTHS"):
        D2SwinTransformer(swin_cfg(DEPTHS=[2, 2, 2]))
    with pytest.raises(ValueError, match="B×C×H×W"):
        backbone(torch.randn(3, 64, 64))


def test_drop_path_linear_over_blocks_and_train_only():
    backbone = D2SwinTransformer(swin_cfg(**(NARROW | {"DEPTHS": [2, 2, 6, 2]}), DROP_PATH_RATE=0.3))
    rates = [getattr(block.drop_path, "drop_prob", 0.0) for stage in backbone.layers for block in stage.blocks]
    torch.testing.assert_close(torch.tensor(rates), torch.linspace(0, 0.3, 12))
    x = torch.randn(2, 3, 32, 32)
    backbone.eval()
    assert torch.equal(backbone(x)["res5"], backbone(x)["res5"])
    backbone.train()
    torch.manual_seed(0)
    first = backbone(x)["res5"]
    torch.manual_seed(1)
    assert not torch.allclose(first, backbone(x)["res5"])


def test_activation_checkpointing_gives_same_outputs_and_gradients():
    torch.manual_seed(0)
    plain = D2SwinTransformer(swin_cfg(**NARROW, DROP_PATH_RATE=0.0)).train()
    ckpt = D2SwinTransformer(swin_cfg(**NARROW, DROP_PATH_RATE=0.0, USE_CHECKPOINT=True)).train()
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 96, 64)
    grads = []
    for model in (plain, ckpt):
        out = model(x)
        sum(v.square().mean() for v in out.values()).backward()
        grads.append({k: p.grad for k, p in model.named_parameters()})
    assert all(g is not None for g in grads[0].values())  # every parameter is trained
    for key, grad in grads[0].items():
        torch.testing.assert_close(grads[1][key], grad, rtol=1e-4, atol=1e-6, msg=key)


def test_absolute_position_embedding_option():
    backbone = D2SwinTransformer(swin_cfg(**NARROW, APE=True)).eval()
    assert backbone.absolute_pos_embed.shape == (1, 16, 56, 56)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        before = backbone(x)["res2"]
        backbone.absolute_pos_embed.add_(1.0)
        assert not torch.allclose(before, backbone(x)["res2"])


def test_keyword_construction_for_lazy_config():
    backbone = D2SwinTransformer(embed_dim=16, depths=(2, 2), num_heads=(1, 2), window_size=4,
                                 out_features=("res2", "res3"), drop_path_rate=0.0)
    out = backbone(torch.randn(1, 3, 40, 24))
    assert {k: tuple(v.shape) for k, v in out.items()} == {"res2": (1, 16, 10, 6), "res3": (1, 32, 5, 3)}
