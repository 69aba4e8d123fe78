"""SmallConvBackbone and Detectron2's ResNet built from the openseed config, feeding the pixel decoder."""

import pytest
import torch
from detectron2.layers import FrozenBatchNorm2d
from detectron2.modeling import build_backbone

from openseed.config import get_cfg
from openseed.modeling.backbone import SmallConvBackbone
from openseed.modeling.pixel_decoder import OpenSeeDPixelDecoder


def small_cfg(**small):
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.NAME = "SmallConvBackbone"
    for key, value in small.items():
        setattr(cfg.MODEL.SMALL_BACKBONE, key, value)
    return cfg


@pytest.mark.parametrize("size", [(64, 96), (70, 99)])
def test_small_backbone_shapes_and_strides(size):
    backbone = build_backbone(small_cfg(CHANNELS=[16, 24, 32, 48]))
    assert isinstance(backbone, SmallConvBackbone) and backbone.size_divisibility == 32
    shapes = backbone.output_shape()
    assert {k: (v.channels, v.stride) for k, v in shapes.items()} == {
        "res2": (16, 4), "res3": (24, 8), "res4": (32, 16), "res5": (48, 32)}
    out = backbone(torch.randn(2, 3, *size))
    h, w = size
    for name, spec in shapes.items():
        assert out[name].shape == (2, spec.channels, -(-h // spec.stride), -(-w // spec.stride))


def test_small_backbone_learns_and_outputs_subset():
    torch.manual_seed(0)
    backbone = SmallConvBackbone(small_cfg(OUT_FEATURES=["res3", "res5"]))
    assert sorted(backbone.output_shape()) == ["res3", "res5"]
    x = torch.randn(2, 3, 32, 32)
    target = torch.randn(2, 256, 1, 1)
    optimizer = torch.optim.SGD(backbone.parameters(), lr=0.05)
    losses = []
    for _ in range(5):
        loss = (backbone(x)["res5"] - target).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_small_backbone_config_errors():
    with pytest.raises(ValueError, match="CHANNELS"):
        SmallConvBackbone(small_cfg(CHANNELS=[16, 32, 64]))
    with pytest.raises(ValueError, match="multiples of 8"):
        SmallConvBackbone(small_cfg(CHANNELS=[12, 24, 32, 48]))
    with pytest.raises(ValueError, match="OUT_FEATURES"):
        SmallConvBackbone(small_cfg(OUT_FEATURES=["res6"]))


def test_small_backbone_with_pixel_decoder():
    cfg = small_cfg()
    cfg.MODEL.ENCODER.TRANSFORMER_ENC_LAYERS = 1
    backbone = build_backbone(cfg)
    decoder = OpenSeeDPixelDecoder(cfg, backbone.output_shape())
    with torch.no_grad():
        mask_features, multi_scale = decoder.forward_features(backbone(torch.randn(1, 3, 128, 64)))
    assert mask_features.shape == (1, 256, 32, 16)
    assert [tuple(m.shape[-2:]) for m in multi_scale] == [(16, 8), (8, 4), (4, 2), (2, 1)]


def test_detectron2_resnet_from_our_config_with_pixel_decoder():
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.NAME = "build_resnet_backbone"
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.ENCODER.TRANSFORMER_ENC_LAYERS = 1
    backbone = build_backbone(cfg).eval()
    shapes = backbone.output_shape()
    assert {k: (v.channels, v.stride) for k, v in shapes.items()} == {
        "res2": (64, 4), "res3": (128, 8), "res4": (256, 16), "res5": (512, 32)}
    assert isinstance(backbone.stem.conv1.norm, FrozenBatchNorm2d)  # pure-Python layers, no compiled ops needed
    decoder = OpenSeeDPixelDecoder(cfg, shapes).eval()
    with torch.no_grad():
        mask_features, multi_scale = decoder.forward_features(backbone(torch.randn(1, 3, 64, 96)))
    assert mask_features.shape == (1, 256, 16, 24)
    assert [tuple(m.shape[-2:]) for m in multi_scale] == [(8, 12), (4, 6), (2, 3), (1, 2)]
