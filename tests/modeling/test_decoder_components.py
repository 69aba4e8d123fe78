"""Decoder building blocks: box sine embedding, inverse sigmoid, memory flattening, encoder proposals, top-k."""

import math

import pytest
import torch

from openseed.modeling.decoder.deformable_decoder import MLP, box_sine_embedding, inverse_sigmoid
from openseed.modeling.decoder.query_selection import (
    best_class_logits,
    encoder_proposals,
    flatten_memory,
    select_top_tokens,
)


def test_box_sine_embedding_matches_hand_computation():
    box = torch.tensor([[[0.5, 0.25, 0.1, 0.2]]])
    embedding = box_sine_embedding(box, num_feats=4, temperature=10000.0)
    assert embedding.shape == (1, 1, 16)
    # dim_t = 10000^(2*floor(j/2)/4) = [1, 1, 100, 100]; features [sin(p0), cos(p1), sin(p2), cos(p3)] per coordinate
    expected = []
    for coord in (0.25, 0.5, 0.1, 0.2):  # order (cy, cx, w, h)
        p = [coord * 2 * math.pi / d for d in (1.0, 1.0, 100.0, 100.0)]
        expected += [math.sin(p[0]), math.cos(p[1]), math.sin(p[2]), math.cos(p[3])]
    assert torch.allclose(embedding[0, 0], torch.tensor(expected), atol=1e-6)


def test_box_sine_embedding_default_size_and_batch_independence():
    boxes = torch.rand(2, 7, 4)
    embedding = box_sine_embedding(boxes)
    assert embedding.shape == (2, 7, 512)
    assert torch.equal(box_sine_embedding(boxes[1:, 3:4]), embedding[1:, 3:4])


def test_inverse_sigmoid_inverts_and_clamps():
    x = torch.tensor([0.2, 0.5, 0.9])
    assert torch.allclose(inverse_sigmoid(x).sigmoid(), x, atol=1e-6)
    edges = inverse_sigmoid(torch.tensor([0.0, 1.0, -3.0, 4.0]))
    limit = math.log(1e-5)
    assert torch.allclose(edges, torch.tensor([limit, -limit, limit, -limit]), atol=1e-4)


def test_mlp_layer_names_and_relu_between_layers():
    mlp = MLP(4, 8, 2, 3)
    assert [name for name, _ in mlp.named_parameters()] == [
        "layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias", "layers.2.weight", "layers.2.bias"]
    x = torch.randn(5, 4)
    hidden = torch.relu(mlp.layers[1](torch.relu(mlp.layers[0](x))))
    assert torch.allclose(mlp(x), mlp.layers[2](hidden))


def test_flatten_memory_puts_the_coarsest_level_first():
    fine, coarse = torch.randn(1, 3, 4, 6), torch.randn(1, 3, 2, 3)
    memory, shapes, starts = flatten_memory([fine, coarse])
    assert shapes == [(2, 3), (4, 6)]
    assert starts.tolist() == [0, 6]
    assert torch.equal(memory[0, :6], coarse.flatten(2)[0].T)
    assert torch.equal(memory[0, 6:], fine.flatten(2)[0].T)


def test_encoder_proposals_anchor_sizes_centres_and_validity():
    # memory order: level 0 = coarsest (1x2), level 1 (2x2), level 2 (1x64: the outer centres 0.5/64 < 0.01 are invalid)
    shapes = torch.tensor([[1, 2], [2, 2], [1, 64]])
    memory = torch.randn(2, 2 + 4 + 64, 8)
    masked, proposals, valid = encoder_proposals(memory, shapes)
    anchors = proposals[0].sigmoid()
    assert torch.allclose(anchors[:2, 2:], torch.full((2, 2), 0.05))
    assert torch.allclose(anchors[2:6, 2:], torch.full((4, 2), 0.1))
    assert torch.allclose(anchors[:2, :2], torch.tensor([[0.25, 0.5], [0.75, 0.5]]))
    assert torch.allclose(anchors[2:6, :2], torch.tensor([[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]))
    expected_valid = torch.ones(70, dtype=torch.bool)
    expected_valid[[6, 69]] = False
    assert torch.equal(valid[0], expected_valid) and torch.equal(valid[1], expected_valid)
    assert torch.isinf(proposals[:, [6, 69]]).all() and (proposals[:, [6, 69]] > 0).all()
    assert torch.isfinite(proposals[:, expected_valid]).all()
    assert (masked[:, [6, 69]] == 0).all()
    assert torch.equal(masked[:, expected_valid], memory[:, expected_valid])
    x = (torch.tensor(1.0) + 0.5) / 64
    assert torch.allclose(proposals[0, 7, 0], torch.log(x / (1 - x)))  # level 2 starts at token 6


def test_anchor_sizes_double_per_level_until_invalid():
    shapes = torch.tensor([[2, 2]] * 6)
    _, proposals, valid = encoder_proposals(torch.zeros(1, 24, 4), shapes)
    sizes = proposals[0, valid[0]][::4, 2].sigmoid()
    assert torch.allclose(sizes, torch.tensor([0.05, 0.1, 0.2, 0.4, 0.8]), atol=1e-6)
    assert not valid[0, 20:].any()  # 0.05 * 2^5 = 1.6 is outside (0.01, 0.99)


@pytest.mark.parametrize("max_elements", [1, 7, 40, 1 << 22])
def test_best_class_logits_in_chunks_equal_the_full_logits_max(max_elements):
    gen = torch.Generator().manual_seed(0)
    tokens, class_embed = torch.randn(2, 23, 6, generator=gen), torch.randn(6, 8, generator=gen)
    text = torch.randn(5, 8, generator=gen)
    scale = torch.tensor(2.5, requires_grad=True)

    def similarity(visual, text):
        return scale * (visual / visual.norm(dim=-1, keepdim=True)) @ text.t()

    full = similarity(tokens @ class_embed, text).max(-1).values
    scores = best_class_logits(tokens, class_embed, text, similarity, max_elements=max_elements)
    assert scores.shape == (2, 23) and not scores.requires_grad
    torch.testing.assert_close(scores, full.detach(), rtol=1e-6, atol=1e-6)


def test_select_top_tokens_skips_invalid_tokens_and_gathers():
    tokens = torch.arange(12.0).view(1, 6, 2)
    boxes = torch.arange(24.0).view(1, 6, 4)
    logits = torch.tensor([[[0.0, 1.0], [5.0, 0.0], [9.0, 9.0], [2.0, 3.0], [0.5, 0.1], [4.0, -1.0]]])
    valid = torch.tensor([[True, True, False, True, True, True]])
    selected = select_top_tokens(tokens, boxes, logits.max(-1).values, valid, k=3)
    assert torch.equal(selected.content[0], tokens[0, [1, 5, 3]])
    assert torch.equal(selected.boxes_unsigmoid[0], boxes[0, [1, 5, 3]])
