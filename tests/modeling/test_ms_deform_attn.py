"""MSDeformAttn: the grid_sample kernel against a per-point bilinear implementation written out by hand."""

import math

import pytest
import torch

from openseed.modeling.pixel_decoder.ms_deform_attn import MSDeformAttn, ms_deform_attn_core_pytorch

SHAPES = [(3, 4), (2, 5)]


def bilinear_at(image: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Sample D×H×W `image` at normalised (x, y) in pixel-area convention (align_corners=False), zeros outside."""
    _, h, w = image.shape
    px, py = x * w - 0.5, y * h - 0.5
    x0, y0 = math.floor(px.item()), math.floor(py.item())
    fx, fy = px - x0, py - y0
    total = image.new_zeros(image.shape[0])
    for cy, wy in ((y0, 1 - fy), (y0 + 1, fy)):
        for cx, wx in ((x0, 1 - fx), (x0 + 1, fx)):
            if 0 <= cx < w and 0 <= cy < h:
                total = total + image[:, cy, cx] * wx * wy
    return total


def naive_ms_deform_attn(value, shapes, locations, weights):
    """Loop over batch, query, head, level, point; same shapes as `ms_deform_attn_core_pytorch`."""
    n, _, m, d = value.shape
    _, num_queries, _, num_levels, num_points, _ = locations.shape
    starts = [0]
    for h, w in shapes:
        starts.append(starts[-1] + h * w)
    rows = []
    for b in range(n):
        per_query = []
        for q in range(num_queries):
            heads = []
            for head in range(m):
                acc = value.new_zeros(d)
                for level, (h, w) in enumerate(shapes):
                    image = value[b, starts[level]:starts[level + 1], head].T.reshape(d, h, w)
                    for p in range(num_points):
                        x, y = locations[b, q, head, level, p]
                        acc = acc + weights[b, q, head, level, p] * bilinear_at(image, x, y)
                heads.append(acc)
            per_query.append(torch.cat(heads))
        rows.append(torch.stack(per_query))
    return torch.stack(rows)


def random_inputs(seed=0, n=2, m=2, d=3, num_queries=4, num_points=2):
    gen = torch.Generator().manual_seed(seed)
    total = sum(h * w for h, w in SHAPES)
    value = torch.randn(n, total, m, d, generator=gen, dtype=torch.float64)
    # locations reach outside [0, 1] so that zero padding is exercised
    locations = torch.rand(n, num_queries, m, len(SHAPES), num_points, 2, generator=gen, dtype=torch.float64) * 1.6 - 0.3
    weights = torch.rand(n, num_queries, m, len(SHAPES), num_points, generator=gen, dtype=torch.float64)
    return value, locations, weights


def test_core_matches_naive_values_and_gradients():
    value, locations, weights = random_inputs()
    spatial_shapes = torch.tensor(SHAPES)
    inputs_fast = [t.clone().requires_grad_(True) for t in (value, locations, weights)]
    inputs_naive = [t.clone().requires_grad_(True) for t in (value, locations, weights)]
    fast = ms_deform_attn_core_pytorch(inputs_fast[0], spatial_shapes, inputs_fast[1], inputs_fast[2])
    naive = naive_ms_deform_attn(inputs_naive[0], SHAPES, inputs_naive[1], inputs_naive[2])
    assert fast.shape == (2, 4, 2 * 3)
    torch.testing.assert_close(fast, naive, rtol=0, atol=1e-12)

    cotangent = torch.randn(fast.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    (fast * cotangent).sum().backward()
    (naive * cotangent).sum().backward()
    for a, b, name in zip(inputs_fast, inputs_naive, ("value", "locations", "weights")):
        assert b.grad is not None and b.grad.abs().sum() > 0, name
        torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=1e-10, msg=name)


def test_core_samples_pixel_centres_exactly_and_zero_outside():
    value = torch.arange(12, dtype=torch.float64).view(1, 12, 1, 1)  # one level 3×4, value = row*4 + col
    shapes = torch.tensor([[3, 4]])
    centre_of_row1_col2 = torch.tensor([(2 + 0.5) / 4, (1 + 0.5) / 3], dtype=torch.float64)
    far_outside = torch.tensor([2.0, 2.0], dtype=torch.float64)
    locations = torch.stack([centre_of_row1_col2, far_outside]).view(1, 2, 1, 1, 1, 2)
    weights = torch.ones(1, 2, 1, 1, 1, dtype=torch.float64)
    out = ms_deform_attn_core_pytorch(value, shapes, locations, weights)
    assert out[0, :, 0].tolist() == [6.0, 0.0]


def _module_and_inputs(ref_dims):
    torch.manual_seed(0)
    module = MSDeformAttn(d_model=8, n_levels=2, n_heads=2, n_points=2).double()
    for param in module.parameters():  # non-zero offsets/attention so that both matter
        torch.nn.init.normal_(param, std=0.5)
    gen = torch.Generator().manual_seed(3)
    total = sum(h * w for h, w in SHAPES)
    query = torch.randn(2, 3, 8, generator=gen, dtype=torch.float64)
    memory = torch.randn(2, total, 8, generator=gen, dtype=torch.float64)
    refs = torch.rand(2, 3, 2, ref_dims, generator=gen, dtype=torch.float64)
    return module, query, memory, refs


@pytest.mark.parametrize("ref_dims", [2, 4])
def test_module_locations_for_points_and_boxes(ref_dims):
    module, query, memory, refs = _module_and_inputs(ref_dims)
    spatial_shapes = torch.tensor(SHAPES)
    level_start = torch.tensor([0, SHAPES[0][0] * SHAPES[0][1]])
    out = module(query, refs, memory, spatial_shapes, level_start)

    offsets = module.sampling_offsets(query).view(2, 3, 2, 2, 2, 2)
    weights = module.attention_weights(query).view(2, 3, 2, 4).softmax(-1).view(2, 3, 2, 2, 2)
    value = module.value_proj(memory).view(2, -1, 2, 4)
    locations = torch.empty_like(offsets)
    for level, (h, w) in enumerate(SHAPES):
        ref = refs[:, :, level]
        if ref_dims == 2:
            step = torch.tensor([1.0 / w, 1.0 / h], dtype=torch.float64)
            locations[:, :, :, level] = ref[:, :, None, None, :2] + offsets[:, :, :, level] * step
        else:  # centre + offset / n_points * (w, h) / 2
            locations[:, :, :, level] = ref[:, :, None, None, :2] + offsets[:, :, :, level] / 2 * ref[:, :, None, None, 2:] / 2
    expected = module.output_proj(naive_ms_deform_attn(value, SHAPES, locations, weights))
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-10)


def test_padding_mask_zeroes_values():
    module, query, memory, refs = _module_and_inputs(2)
    spatial_shapes = torch.tensor(SHAPES)
    level_start = torch.tensor([0, 12])
    mask = torch.zeros(2, memory.shape[1], dtype=torch.bool)
    mask[:, 5:] = True
    masked = module(query, refs, memory, spatial_shapes, level_start, mask)
    replaced = memory.clone()
    replaced[:, 5:] = torch.randn_like(replaced[:, 5:]) * 100  # masked tokens must not matter ...
    torch.testing.assert_close(module(query, refs, replaced, spatial_shapes, level_start, mask), masked)
    # ... but they do matter without the mask
    assert (module(query, refs, replaced, spatial_shapes, level_start) - masked).abs().max() > 1e-3


def test_default_initialisation():
    module = MSDeformAttn(d_model=16, n_levels=3, n_heads=4, n_points=2)
    assert module.sampling_offsets.weight.abs().sum() == 0
    assert module.attention_weights.weight.abs().sum() == 0 and module.attention_weights.bias.abs().sum() == 0
    bias = module.sampling_offsets.bias.view(4, 3, 2, 2)
    # head h points at angle 2πh/4, scaled so that the larger coordinate is 1; point i at distance i+1
    expected_head_dirs = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    for point in range(2):
        torch.testing.assert_close(bias[:, 1, point], expected_head_dirs * (point + 1), atol=1e-6, rtol=0)
    assert module.value_proj.bias.abs().sum() == 0 and module.output_proj.bias.abs().sum() == 0


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="unknown implementation 'cuda'"):
        MSDeformAttn(impl="cuda")
    with pytest.raises(ValueError, match="divisible"):
        MSDeformAttn(d_model=10, n_heads=4)
    module, query, memory, refs = _module_and_inputs(2)
    with pytest.raises(ValueError, match="end in 2"):
        module(query, refs[..., :1], memory, torch.tensor(SHAPES), torch.tensor([0, 12]))
    with pytest.raises(ValueError, match="do not add up"):
        module(query, refs, memory, torch.tensor([[3, 4], [2, 2]]), torch.tensor([0, 12]))
