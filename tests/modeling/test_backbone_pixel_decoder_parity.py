"""Swin-T backbone and pixel decoder against the official outputs on the parity image (refdata, 1e-4 max abs)."""

import pytest
import torch

from openseed.config import get_cfg
from openseed.modeling.backbone import D2SwinTransformer
from openseed.modeling.pixel_decoder import OpenSeeDPixelDecoder
from tests.refdata_utils import official_outputs, official_substate, parity_image

TOLERANCE = 1e-4
PIXEL_MEAN = torch.tensor([123.675, 116.280, 103.530]).view(3, 1, 1)
PIXEL_STD = torch.tensor([58.395, 57.120, 57.375]).view(3, 1, 1)

pytestmark = pytest.mark.slow


def _with_own_buffers(module: torch.nn.Module, official: dict) -> dict:
    """The parity weights omit buffers (relative_position_index): take the module's own, compare nothing for them."""
    state = dict(official)
    for name, buffer in module.named_buffers():
        state.setdefault(name, buffer)
    return state


def _stride(key: str) -> int:
    return int(key.rsplit(".stride", 1)[1]) if ".stride" in key else 1


@pytest.fixture(scope="module")
def backbone_features(refdata):
    cfg = get_cfg()  # defaults are the official Swin-T values
    backbone = D2SwinTransformer(cfg).eval()
    backbone.load_state_dict(_with_own_buffers(backbone, official_substate(refdata, "backbone.")), strict=True)
    image = (parity_image(refdata).float() - PIXEL_MEAN) / PIXEL_STD
    with torch.no_grad():
        features = backbone(image[None])
    return cfg, backbone.output_shape(), features


def test_swin_t_matches_official_backbone_outputs(refdata, backbone_features):
    _, _, features = backbone_features
    reference = {k: v for k, v in official_outputs(refdata).items() if k.startswith("backbone.")}
    assert sorted(k.split(".")[1] for k in reference) == ["res2", "res3", "res4", "res5"]
    for key, expected in reference.items():
        step = _stride(key)
        ours = features[key.split(".")[1]][..., ::step, ::step]
        assert ours.shape == expected.shape, key
        error = (ours - expected).abs().max().item()
        assert error < TOLERANCE, f"{key}: max abs error {error:.2e}"


def test_pixel_decoder_matches_official_outputs(refdata, backbone_features):
    cfg, shapes, features = backbone_features
    cfg = cfg.clone()
    cfg.MODEL.ENCODER.DEFORM_ATTN_IMPL = "pytorch"  # the reference kernel (the fast one: test_deform_attn_embedding_bag)
    decoder = OpenSeeDPixelDecoder(cfg, shapes).eval()
    decoder.load_state_dict(official_substate(refdata, "sem_seg_head.pixel_decoder."), strict=True)
    with torch.no_grad():
        mask_features, multi_scale = decoder.forward_features(features)
    reference = {k: v for k, v in official_outputs(refdata).items() if k.startswith("pixel_decoder.")}
    assert len(reference) == 1 + len(multi_scale) == 5
    for key, expected in reference.items():
        parts = key.split(".")
        ours = mask_features if parts[1] == "mask_features" else multi_scale[int(parts[2])]
        step = _stride(key)
        ours = ours[..., ::step, ::step]
        assert ours.shape == expected.shape, key
        error = (ours - expected).abs().max().item()
        assert error < TOLERANCE, f"{key}: max abs error {error:.2e}"
