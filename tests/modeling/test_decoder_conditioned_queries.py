"""Conditioned (denoising) queries: groups, padding, content, box noise, attention mask; box prompts."""

import pytest
import torch

from openseed.modeling.decoder.conditioned_queries import (
    BoxPrompts,
    attention_mask,
    build_prompt_queries,
    build_training_queries,
    noise_boxes,
    prompt_boxes_from_pixels,
)
from openseed.modeling.decoder.deformable_decoder import inverse_sigmoid


def _targets(counts, seed=0):
    gen = torch.Generator().manual_seed(seed)
    targets = []
    for n in counts:
        centres = torch.rand(n, 2, generator=gen) * 0.4 + 0.3
        sizes = torch.rand(n, 2, generator=gen) * 0.2 + 0.05
        targets.append({"labels": torch.randint(0, 5, (n,), generator=gen), "boxes": torch.cat([centres, sizes], 1)})
    return targets


@pytest.fixture
def text_and_mapper():
    gen = torch.Generator().manual_seed(1)
    return torch.nn.functional.normalize(torch.randn(5, 6, generator=gen), dim=-1), torch.randn(6, 8, generator=gen)


@pytest.mark.parametrize("counts,groups", [([3, 1], 33), ([7], 14), ([100], 1), ([50, 2], 2), ([1, 0], 100)])
def test_number_of_groups_is_budget_over_largest_image(counts, groups, text_and_mapper):
    text, mapper = text_and_mapper
    block = build_training_queries(_targets(counts), text, mapper, dn_num=100, noise_scale=0.4)
    assert block.num_groups == groups and block.group_size == max(counts)
    assert block.content.shape == (len(counts), groups * max(counts), 8)
    assert block.boxes_unsigmoid.shape == (len(counts), groups * max(counts), 4)


def test_float32_embeddings_under_autocast_keep_float32_queries(text_and_mapper):
    """On CUDA float16 autocast the text embeddings arrive in float32 while their projection runs in float16; the
    block stays in the embeddings' dtype (CPU bfloat16 autocast has the same split). Failed with "Index put requires
    the source and destination dtypes match" before the cast."""
    text, mapper = text_and_mapper
    targets = _targets([3, 1])
    exact = build_training_queries(targets, text, mapper, dn_num=10, noise_scale=0.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        block = build_training_queries(targets, text, mapper, dn_num=10, noise_scale=0.0)
    assert block.content.dtype == block.boxes_unsigmoid.dtype == torch.float32
    assert torch.equal(block.valid, exact.valid)
    assert torch.equal(block.boxes_unsigmoid, exact.boxes_unsigmoid)
    assert torch.allclose(block.content, exact.content, rtol=2e-2, atol=2e-2)
    assert not torch.equal(block.content, exact.content)  # the projection did run in bfloat16


@pytest.mark.parametrize("counts", [[0, 0], [101], [3, 150]])
def test_no_denoising_queries_without_gt_or_beyond_budget(counts, text_and_mapper):
    text, mapper = text_and_mapper
    assert build_training_queries(_targets(counts), text, mapper, dn_num=100, noise_scale=0.4) is None


def test_slots_content_and_padding(text_and_mapper):
    text, mapper = text_and_mapper
    targets = _targets([3, 1])
    block = build_training_queries(targets, text, mapper, dn_num=10, noise_scale=0.0)
    assert (block.num_groups, block.group_size) == (3, 3)
    expected_valid = torch.tensor([[True] * 9, [True, False, False] * 3])
    assert torch.equal(block.valid, expected_valid)
    for image, target in enumerate(targets):
        for group in range(3):
            for j in range(len(target["labels"])):
                slot = group * 3 + j
                content = text[target["labels"][j]] @ mapper
                assert torch.allclose(block.content[image, slot], content, atol=1e-6)
                assert torch.allclose(block.boxes_unsigmoid[image, slot], inverse_sigmoid(target["boxes"][j]))
    assert (block.content[1, ~expected_valid[1]] == 0).all()
    assert (block.boxes_unsigmoid[1, ~expected_valid[1]] == 0).all()  # box (0.5, 0.5, 0.5, 0.5)


def test_content_carries_gradient_to_text_and_mapper(text_and_mapper):
    text, mapper = text_and_mapper
    text, mapper = text.clone().requires_grad_(), mapper.clone().requires_grad_()
    block = build_training_queries(_targets([2]), text, mapper, dn_num=4, noise_scale=0.4)
    block.content.sum().backward()
    assert text.grad.abs().sum() > 0 and mapper.grad.abs().sum() > 0


def test_box_noise_bounds():
    torch.manual_seed(0)
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.4]]).repeat(5000, 1)
    noised = noise_boxes(boxes, 0.4)
    delta = (noised - boxes).abs()
    assert (delta[:, 0] <= 0.4 * 0.2 / 2 + 1e-6).all() and (delta[:, 1] <= 0.4 * 0.4 / 2 + 1e-6).all()
    assert (delta[:, 2] <= 0.4 * 0.2 + 1e-6).all() and (delta[:, 3] <= 0.4 * 0.4 + 1e-6).all()
    assert delta[:, 0].max() > 0.9 * 0.04 and delta[:, 3].max() > 0.9 * 0.16  # the bounds are reached
    edge = noise_boxes(torch.tensor([[0.01, 0.99, 0.9, 0.9]]).repeat(1000, 1), 0.4)
    assert edge.min() >= 0 and edge.max() <= 1
    assert torch.equal(noise_boxes(boxes[:3], 0.0), boxes[:3])


def test_attention_mask_pattern():
    mask = attention_mask(num_groups=3, group_size=2, num_matching=4, device=torch.device("cpu"))
    blocked = torch.tensor([
        [0, 0, 1, 1, 1, 1, 0, 0, 0, 0],
        [0, 0, 1, 1, 1, 1, 0, 0, 0, 0],
        [1, 1, 0, 0, 1, 1, 0, 0, 0, 0],
        [1, 1, 0, 0, 1, 1, 0, 0, 0, 0],
        [1, 1, 1, 1, 0, 0, 0, 0, 0, 0],
        [1, 1, 1, 1, 0, 0, 0, 0, 0, 0],
    ] + [[1, 1, 1, 1, 1, 1, 0, 0, 0, 0]] * 4, dtype=torch.bool)
    assert torch.equal(mask, blocked)


def test_clean_group_is_appended_after_the_noised_groups(text_and_mapper):
    text, mapper = text_and_mapper
    torch.manual_seed(0)
    targets = _targets([2, 1])
    block = build_training_queries(targets, text, mapper, dn_num=4, noise_scale=0.4, extra_clean_group=True)
    assert (block.num_groups, block.group_size) == (3, 2)
    clean = block.boxes_unsigmoid[0, 4:6]
    assert torch.allclose(clean, inverse_sigmoid(targets[0]["boxes"]))
    assert not torch.allclose(block.boxes_unsigmoid[0, 0:2], clean)
    only_clean = build_training_queries(_targets([150]), text, mapper, dn_num=100, noise_scale=0.4,
                                        extra_clean_group=True)
    assert (only_clean.num_groups, only_clean.group_size) == (1, 150)


def test_prompt_queries_zero_content_without_concepts(text_and_mapper):
    _, mapper = text_and_mapper
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.3, 0.3, 0.1, 0.1]], [[0.6, 0.6, 0.2, 0.2], [0, 0, 0, 0]]])
    valid = torch.tensor([[True, True], [True, False]])
    block = build_prompt_queries(BoxPrompts(boxes, valid), mapper)
    assert (block.num_groups, block.group_size) == (1, 2)
    assert (block.content == 0).all()
    assert torch.allclose(block.boxes_unsigmoid[0], inverse_sigmoid(boxes[0]))
    assert (block.boxes_unsigmoid[1, 1] == 0).all()
    concept = torch.randn(2, 2, 6)
    with_text = build_prompt_queries(BoxPrompts(boxes, valid, concept), mapper)
    assert torch.allclose(with_text.content[0], concept[0] @ mapper)
    assert (with_text.content[1, 1] == 0).all()


def test_prompt_boxes_from_pixels_scales_clips_and_pads():
    boxes, valid = prompt_boxes_from_pixels(
        [[[0, 0, 100, 50]], [[10, 20, 30, 60], [0, 0, 200, 100]]],
        output_sizes=[(100, 200), (100, 200)], input_sizes=[(50, 100), (50, 100)], padded_size=(64, 128),
        device=torch.device("cpu"))
    # image 0: input scale 0.5 -> (0, 0, 50, 25): centre (25, 12.5), size (50, 25) over padded (128, 64)
    assert torch.allclose(boxes[0, 0], torch.tensor([25 / 128, 12.5 / 64, 50 / 128, 25 / 64]))
    assert torch.equal(valid, torch.tensor([[True, False], [True, True]]))
    assert (boxes[0, 1] == 0).all()
    with pytest.warns(UserWarning, match="clipped"):
        clipped, _ = prompt_boxes_from_pixels([[[-10, 5, 250, 50]]], [(100, 200)], [(100, 200)], (128, 224),
                                              torch.device("cpu"))
    assert torch.allclose(clipped[0, 0], torch.tensor([100 / 224, 27.5 / 128, 200 / 224, 45 / 128]))
    with pytest.raises(ValueError, match="no area"), pytest.warns(UserWarning, match="clipped"):
        prompt_boxes_from_pixels([[[300, 10, 400, 20]]], [(100, 200)], [(100, 200)], (128, 224), torch.device("cpu"))
