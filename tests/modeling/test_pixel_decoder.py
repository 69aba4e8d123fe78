"""OpenSeeDPixelDecoder: official key layout, level order/strides, FPN wiring, fp32, checkpointing; sine embedding."""

import math

import pytest
import torch
import torch.nn.functional as F
from detectron2.layers import ShapeSpec

from openseed.config import get_cfg
from openseed.modeling.pixel_decoder import OpenSeeDPixelDecoder, PositionEmbeddingSine
from openseed.modeling.pixel_decoder.encoder import pixel_centre_reference_points
from tests.refdata_utils import official_keys

SWIN_T = {"res2": (96, 4), "res3": (192, 8), "res4": (384, 16), "res5": (768, 32)}
SWIN_L = {"res2": (192, 4), "res3": (384, 8), "res4": (768, 16), "res5": (1536, 32)}


def shapes_of(channels_strides):
    return {name: ShapeSpec(channels=c, stride=s) for name, (c, s) in channels_strides.items()}


def random_features(channels_strides, height, width, batch=1, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return {name: torch.randn(batch, c, height // s, width // s, generator=gen)
            for name, (c, s) in channels_strides.items()}


def decoder_cfg(**encoder):
    cfg = get_cfg()
    cfg.MODEL.ENCODER.TRANSFORMER_ENC_LAYERS = 1  # fast; the layer count does not change the wiring under test
    for key, value in encoder.items():
        setattr(cfg.MODEL.ENCODER, key, value)
    return cfg


def test_state_dict_keys_equal_official_pixel_decoder_keys(refdata):
    decoder = OpenSeeDPixelDecoder(get_cfg(), shapes_of(SWIN_T))
    ours = {k: tuple(v.shape) for k, v in decoder.state_dict().items()}
    prefix = "sem_seg_head.pixel_decoder."
    official = {key[len(prefix):]: shape for key, shape, _ in official_keys(refdata) if key.startswith(prefix)}
    assert ours == official


def test_swin_t_levels_strides_and_channels():
    decoder = OpenSeeDPixelDecoder(decoder_cfg(), shapes_of(SWIN_T)).eval()
    assert [p[0].in_channels for p in decoder.input_proj] == [192, 384, 768, 768]
    assert decoder.input_proj[3][0].stride == (2, 2) and decoder.num_fpn_levels == 1
    with torch.no_grad():
        mask_features, multi_scale = decoder.forward_features(random_features(SWIN_T, 256, 320, batch=2))
    assert mask_features.shape == (2, 256, 64, 80)
    assert [tuple(m.shape) for m in multi_scale] == [(2, 256, 256 // s, 320 // s) for s in (8, 16, 32, 64)]


def test_swin_l_five_levels_with_res2_in_the_encoder():
    cfg = decoder_cfg(DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES=["res2", "res3", "res4", "res5"],
                      TOTAL_NUM_FEATURE_LEVELS=5)
    decoder = OpenSeeDPixelDecoder(cfg, shapes_of(SWIN_L)).eval()
    assert [p[0].in_channels for p in decoder.input_proj] == [192, 384, 768, 1536, 1536]
    assert decoder.transformer.level_embed.shape == (5, 256)
    assert decoder.num_fpn_levels == 1 and decoder.adapter_1.in_channels == 192  # FPN still on res2
    with torch.no_grad():
        mask_features, multi_scale = decoder.forward_features(random_features(SWIN_L, 128, 192))
    assert mask_features.shape == (1, 256, 32, 48)
    assert [tuple(m.shape[-2:]) for m in multi_scale] == [(128 // s, 192 // s) for s in (4, 8, 16, 32, 64)]


def test_fpn_adds_upsampled_finest_encoder_map_to_res2():
    decoder = OpenSeeDPixelDecoder(decoder_cfg(), shapes_of(SWIN_T)).eval()
    features = random_features(SWIN_T, 128, 96)
    with torch.no_grad():
        mask_features, multi_scale = decoder.forward_features(features)
        lateral = decoder.adapter_1(features["res2"])
        fpn = decoder.layer_1(lateral + F.interpolate(multi_scale[0], size=(32, 24), mode="bilinear",
                                                      align_corners=False))
        torch.testing.assert_close(mask_features, decoder.mask_features(fpn))
    assert (fpn >= 0).all()  # the output conv ends in ReLU


def test_two_fpn_levels_when_the_encoder_starts_at_stride_16():
    small = {"res2": (32, 4), "res3": (64, 8), "res4": (128, 16), "res5": (256, 32)}
    cfg = decoder_cfg(DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES=["res4", "res5"], TOTAL_NUM_FEATURE_LEVELS=3,
                      CONVS_DIM=64, MASK_DIM=32, DIM_FEEDFORWARD=64)
    decoder = OpenSeeDPixelDecoder(cfg, shapes_of(small)).eval()
    assert decoder.num_fpn_levels == 2
    assert (decoder.adapter_1.in_channels, decoder.adapter_2.in_channels) == (32, 64)
    with torch.no_grad():
        mask_features, multi_scale = decoder.forward_features(random_features(small, 64, 96))
    assert mask_features.shape == (1, 32, 16, 24)
    assert [tuple(m.shape) for m in multi_scale] == [(1, 64, 4, 6), (1, 64, 2, 3), (1, 64, 1, 2)]


def test_runs_in_fp32_under_autocast_with_the_reference_parts():
    """With `CPU_BFLOAT16 False` the whole pixel decoder runs in fp32 under autocast, as the reference (the default's
    bfloat16 parts are tested in tests/modeling/test_mixed_precision.py)."""
    decoder = OpenSeeDPixelDecoder(decoder_cfg(CPU_BFLOAT16=False), shapes_of(SWIN_T)).eval()
    features = {k: v.to(torch.bfloat16) for k, v in random_features(SWIN_T, 64, 64).items()}
    with torch.no_grad():
        reference, reference_levels = decoder.forward_features({k: v.float() for k, v in features.items()})
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mask_features, multi_scale = decoder.forward_features(features)
    assert mask_features.dtype == torch.float32 and all(m.dtype == torch.float32 for m in multi_scale)
    torch.testing.assert_close(mask_features, reference)


def test_inference_runs_the_layers_after_attention_in_row_chunks_with_the_same_result(monkeypatch):
    """Without autograd the residuals, norms and FFN run over chunks of FFN_CHUNK_TOKENS tokens (here 7: chunks
    that cut through levels and a last partial chunk), the first FFN linear with its ReLU fused (oneDNN); the
    result is the one-GEMM result of the autograd path."""
    from openseed.modeling.pixel_decoder import encoder
    from openseed.utils import onednn

    torch.manual_seed(0)
    decoder = OpenSeeDPixelDecoder(decoder_cfg(TRANSFORMER_ENC_LAYERS=2), shapes_of(SWIN_T)).eval()
    features = random_features(SWIN_T, 96, 64)
    one_gemm, one_gemm_levels = decoder.forward_features(features)  # autograd on: one GEMM per linear
    linear1_rows = []
    first_linear1 = decoder.transformer.encoder.layers[0].linear1.weight
    original_linear = onednn.linear_float32

    def recording_linear(x, weight, bias=None, relu=False):
        if weight is first_linear1:
            linear1_rows.append((x.shape[0], relu))
        return original_linear(x, weight, bias, relu)

    monkeypatch.setattr(onednn, "linear_float32", recording_linear)
    monkeypatch.setattr(encoder, "FFN_CHUNK_TOKENS", 7)
    with torch.no_grad():
        chunked, chunked_levels = decoder.forward_features(features)
    tokens = sum(level.shape[-2] * level.shape[-1] for level in chunked_levels)
    assert linear1_rows == [(7, True)] * (tokens // 7) + [(tokens % 7, True)] and tokens % 7
    torch.testing.assert_close(chunked, one_gemm.detach(), rtol=1e-5, atol=1e-5)
    for level, reference in zip(chunked_levels, one_gemm_levels):
        torch.testing.assert_close(level, reference.detach(), rtol=1e-5, atol=1e-5)


def test_activation_checkpointing_and_gradients_reach_every_parameter():
    small = {"res2": (32, 4), "res3": (64, 8), "res4": (128, 16), "res5": (256, 32)}
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        cfg = decoder_cfg(CONVS_DIM=64, MASK_DIM=32, DIM_FEEDFORWARD=64, TRANSFORMER_ENC_LAYERS=2,
                          ACTIVATION_CHECKPOINT=checkpointing)
        decoder = OpenSeeDPixelDecoder(cfg, shapes_of(small)).train()
        for module in decoder.modules():  # move off the zero init of offsets/attention so they get gradients
            if hasattr(module, "sampling_offsets"):
                torch.nn.init.normal_(module.attention_weights.weight, std=0.1)
        mask_features, multi_scale = decoder.forward_features(random_features(small, 64, 64))
        (mask_features.square().mean() + sum(m.square().mean() for m in multi_scale)).backward()
        grads.append({k: p.grad for k, p in decoder.named_parameters()})
    missing = [k for k, g in grads[0].items() if g is None or g.abs().sum() == 0]
    assert not missing, missing
    for key, grad in grads[0].items():
        torch.testing.assert_close(grads[1][key], grad, rtol=1e-4, atol=1e-6, msg=key)


def test_configuration_errors_name_the_key():
    with pytest.raises(ValueError, match="DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES"):
        OpenSeeDPixelDecoder(decoder_cfg(DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES=["res6"]), shapes_of(SWIN_T))
    with pytest.raises(ValueError, match="TOTAL_NUM_FEATURE_LEVELS"):
        OpenSeeDPixelDecoder(decoder_cfg(TOTAL_NUM_FEATURE_LEVELS=2), shapes_of(SWIN_T))
    with pytest.raises(ValueError, match="IN_FEATURES"):
        OpenSeeDPixelDecoder(decoder_cfg(), {k: v for k, v in shapes_of(SWIN_T).items() if k != "res2"})
    with pytest.raises(ValueError, match="DEFORM_ATTN_IMPL"):
        OpenSeeDPixelDecoder(decoder_cfg(DEFORM_ATTN_IMPL="cuda"), shapes_of(SWIN_T))


def test_reference_points_are_pixel_centres():
    points = pixel_centre_reference_points([(2, 2), (1, 2)], torch.device("cpu"))
    expected = [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75], [0.25, 0.5], [0.75, 0.5]]
    torch.testing.assert_close(points, torch.tensor(expected))


def test_sine_position_embedding_by_hand():
    pos = PositionEmbeddingSine(num_pos_feats=4)(torch.zeros(2, 7, 2, 3, dtype=torch.float64))
    assert pos.shape == (2, 8, 2, 3)
    frequencies = [1.0, 1.0, 100.0, 100.0]  # 10000 ** (2 * (k // 2) / 4)

    def encode(c):
        return [math.sin(c / frequencies[0]), math.cos(c / frequencies[1]),
                math.sin(c / frequencies[2]), math.cos(c / frequencies[3])]

    for i in range(2):
        for j in range(3):
            y = (i + 1) / (2 + 1e-6) * 2 * math.pi
            x = (j + 1) / (3 + 1e-6) * 2 * math.pi
            expected = torch.tensor(encode(y) + encode(x), dtype=torch.float64)
            torch.testing.assert_close(pos[1, :, i, j], expected, rtol=0, atol=1e-12)


def test_keyword_construction_for_lazy_config():
    small = {"res2": (32, 4), "res3": (64, 8), "res4": (128, 16), "res5": (256, 32)}
    decoder = OpenSeeDPixelDecoder(shapes_of(small), transformer_in_features=["res3", "res4", "res5"],
                                   total_num_feature_levels=4, conv_dim=64, mask_dim=64, transformer_enc_layers=1,
                                   transformer_dim_feedforward=64)
    with torch.no_grad():
        mask_features, multi_scale = decoder(random_features(small, 64, 64))
    assert mask_features.shape == (1, 64, 16, 16) and len(multi_scale) == 4
