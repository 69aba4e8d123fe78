"""The embedding-bag deformable-attention kernel equals the pure-PyTorch reference in values and gradients."""

import pytest
import torch
from detectron2.layers import ShapeSpec

from openseed.config import get_cfg
from openseed.modeling.backbone import D2SwinTransformer
from openseed.modeling.pixel_decoder.deform_attn_embedding_bag import ms_deform_attn_core_embedding_bag
from openseed.modeling.pixel_decoder.encoder import OpenSeeDPixelDecoder
from openseed.modeling.pixel_decoder.ms_deform_attn import (
    DEFORM_ATTN_KERNELS,
    MSDeformAttn,
    ms_deform_attn_core_pytorch,
)
from tests.refdata_utils import official_outputs, official_substate, parity_image

SHAPES = [(6, 9), (3, 5), (2, 2), (1, 1)]
PIXEL_MEAN = torch.tensor([123.675, 116.280, 103.530]).view(3, 1, 1)
PIXEL_STD = torch.tensor([58.395, 57.120, 57.375]).view(3, 1, 1)


def random_inputs(dtype, seed=0, n=2, m=3, d=4, num_queries=7, num_points=3, spread=1.8):
    """Locations reach well outside [0, 1] (zero padding and clamping) and land exactly on pixel centres and edges."""
    gen = torch.Generator().manual_seed(seed)
    total = sum(h * w for h, w in SHAPES)
    value = torch.randn(n, total, m, d, generator=gen, dtype=dtype)
    shape = (n, num_queries, m, len(SHAPES), num_points, 2)
    locations = torch.rand(shape, generator=gen, dtype=dtype) * spread - (spread - 1) / 2
    sizes = torch.tensor(SHAPES, dtype=dtype).flip(-1)[:, None, :]  # (W_l, H_l) per level
    locations[:, 0] = (torch.randint(-2, 12, shape[2:], generator=gen).to(dtype) + 0.5) / sizes  # centres
    locations[:, 1] = torch.randint(-2, 12, shape[2:], generator=gen).to(dtype) / sizes  # pixel edges
    weights = torch.rand(shape[:-1], generator=gen, dtype=dtype)
    return value, locations, weights


def values_and_grads(kernel, value, locations, weights, cotangent):
    inputs = [t.clone().requires_grad_(True) for t in (value, locations, weights)]
    output = kernel(inputs[0], torch.tensor(SHAPES), inputs[1], inputs[2])
    (output * cotangent).sum().backward()
    return output, [t.grad for t in inputs]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_values_and_gradients_equal_the_reference_in_float64(seed):
    value, locations, weights = random_inputs(torch.float64, seed)
    cotangent = torch.randn(2, 7, 3 * 4, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    ref, ref_grads = values_and_grads(ms_deform_attn_core_pytorch, value, locations, weights, cotangent)
    out, grads = values_and_grads(ms_deform_attn_core_embedding_bag, value, locations, weights, cotangent)
    assert out.shape == ref.shape == (2, 7, 12)
    assert ref.abs().max() > 0.1
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-10)
    for name, grad, ref_grad in zip(("value", "locations", "weights"), grads, ref_grads):
        assert ref_grad.abs().max() > 0.1, name
        torch.testing.assert_close(grad, ref_grad, rtol=0, atol=1e-8, msg=name)


def test_float32_agrees_within_1e5_relative_to_magnitude():
    value, locations, weights = random_inputs(torch.float32, seed=3, num_queries=40, num_points=4, spread=1.2)
    cotangent = torch.randn(2, 40, 12, generator=torch.Generator().manual_seed(4))
    ref, ref_grads = values_and_grads(ms_deform_attn_core_pytorch, value, locations, weights, cotangent)
    out, grads = values_and_grads(ms_deform_attn_core_embedding_bag, value, locations, weights, cotangent)
    assert (out - ref).abs().max() <= 1e-5 * max(1.0, ref.abs().max())
    for grad, ref_grad in zip(grads, ref_grads):
        assert (grad - ref_grad).abs().max() <= 1e-5 * max(1.0, ref_grad.abs().max())


def test_far_outside_points_contribute_nothing():
    value, locations, weights = random_inputs(torch.float64)
    locations[:, :, :, 0] = torch.tensor([-3.0, 5.0])  # every point of level 0 far outside its map
    out = ms_deform_attn_core_embedding_bag(value, torch.tensor(SHAPES), locations, weights)
    weights[:, :, :, 0] = 0.0
    torch.testing.assert_close(out, ms_deform_attn_core_pytorch(value, torch.tensor(SHAPES), locations, weights),
                               rtol=0, atol=1e-12)


def test_selectable_by_name_and_in_the_pixel_decoder():
    assert DEFORM_ATTN_KERNELS["embedding_bag"] is ms_deform_attn_core_embedding_bag
    attention = MSDeformAttn(d_model=16, n_levels=2, n_heads=2, n_points=2, impl="embedding_bag")
    assert attention.impl == "embedding_bag"
    cfg = get_cfg()
    cfg.MODEL.ENCODER.CONVS_DIM = cfg.MODEL.ENCODER.MASK_DIM = 32
    cfg.MODEL.ENCODER.NHEADS, cfg.MODEL.ENCODER.DIM_FEEDFORWARD = 4, 64
    cfg.MODEL.ENCODER.TRANSFORMER_ENC_LAYERS = 2
    shapes = {f"res{i}": ShapeSpec(channels=8 * 2 ** (i - 2), stride=2 ** i) for i in range(2, 6)}
    torch.manual_seed(0)
    cfg.MODEL.ENCODER.DEFORM_ATTN_IMPL = "pytorch"
    reference = OpenSeeDPixelDecoder(cfg, shapes).eval()
    cfg.MODEL.ENCODER.DEFORM_ATTN_IMPL = "embedding_bag"
    fast = OpenSeeDPixelDecoder(cfg, shapes).eval()
    fast.load_state_dict(reference.state_dict())
    gen = torch.Generator().manual_seed(1)
    features = {name: torch.randn(1, s.channels, 96 // s.stride, 128 // s.stride, generator=gen)
                for name, s in shapes.items()}
    with torch.no_grad():
        ref_mask, ref_levels = reference.forward_features(features)
        mask, levels = fast.forward_features(features)
    torch.testing.assert_close(mask, ref_mask, rtol=1e-5, atol=1e-5)
    for level, ref_level in zip(levels, ref_levels):
        torch.testing.assert_close(level, ref_level, rtol=1e-5, atol=1e-5)


def test_auto_runs_the_embedding_bag_kernel_on_cpu():
    value, locations, weights = random_inputs(torch.float32, seed=5)
    auto = DEFORM_ATTN_KERNELS["auto"](value, torch.tensor(SHAPES), locations, weights)
    fast = ms_deform_attn_core_embedding_bag(value, torch.tensor(SHAPES), locations, weights)
    reference = ms_deform_attn_core_pytorch(value, torch.tensor(SHAPES), locations, weights)
    assert torch.equal(auto, fast)
    assert not torch.equal(auto, reference)  # rounding differs: the dispatch really chose the fast kernel
    assert get_cfg().MODEL.ENCODER.DEFORM_ATTN_IMPL == "auto"


def test_auto_runs_the_reference_kernel_in_exported_graphs(monkeypatch):
    """Under `torch.export` (ONNX) "auto" picks grid_sample: ONNX Runtime runs its GridSample on all threads."""
    value, locations, weights = random_inputs(torch.float32, seed=5)
    monkeypatch.setattr(torch.compiler, "is_exporting", lambda: True)
    auto = DEFORM_ATTN_KERNELS["auto"](value, torch.tensor(SHAPES), locations, weights)
    assert torch.equal(auto, ms_deform_attn_core_pytorch(value, torch.tensor(SHAPES), locations, weights))


@pytest.mark.slow
def test_pixel_decoder_with_embedding_bag_matches_official_outputs(refdata):
    """Official weights and parity image (refdata): the fast kernel keeps the 1e-4 parity of the reference one."""
    cfg = get_cfg()
    backbone = D2SwinTransformer(cfg).eval()
    state = dict(official_substate(refdata, "backbone."))
    state.update({name: buffer for name, buffer in backbone.named_buffers() if name not in state})
    backbone.load_state_dict(state, strict=True)
    image = (parity_image(refdata).float() - PIXEL_MEAN) / PIXEL_STD
    cfg.MODEL.ENCODER.DEFORM_ATTN_IMPL = "embedding_bag"
    decoder = OpenSeeDPixelDecoder(cfg, backbone.output_shape()).eval()
    decoder.load_state_dict(official_substate(refdata, "sem_seg_head.pixel_decoder."), strict=True)
    with torch.no_grad():
        mask_features, multi_scale = decoder.forward_features(backbone(image[None]))
    reference = {k: v for k, v in official_outputs(refdata).items() if k.startswith("pixel_decoder.")}
    assert len(reference) == 5
    for key, expected in reference.items():
        parts = key.split(".")
        ours = mask_features if parts[1] == "mask_features" else multi_scale[int(parts[2])]
        step = int(key.rsplit(".stride", 1)[1]) if ".stride" in key else 1
        ours = ours[..., ::step, ::step]
        assert ours.shape == expected.shape, key
        assert (ours - expected).abs().max().item() < 1e-4, key
