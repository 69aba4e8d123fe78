"""TrainingDraws / RecordedDraws: the default source draws like plain torch calls; recorded draws replay exactly."""

import pytest
import torch

from openseed.utils.random_draws import RecordedDraws, TrainingDraws


def test_default_draws_are_plain_torch_draws():
    torch.manual_seed(5)
    draws = TrainingDraws().scoped("seg")
    values = (draws.uniform("a", (2, 3), "cpu"), draws.integers("b", 81, 4), draws.choices("c", [1, 3, 2]))
    torch.manual_seed(5)
    expected_uniform = torch.rand(2, 3)
    expected_ints = torch.randint(81, (4,)).tolist()
    expected_choices = [0, int(torch.randint(3, (1,))), int(torch.randint(2, (1,)))]
    assert torch.equal(values[0], expected_uniform)
    assert values[1] == expected_ints and values[2] == expected_choices
    generator = TrainingDraws(torch.Generator().manual_seed(1))
    again = TrainingDraws(torch.Generator().manual_seed(1))
    assert torch.equal(generator.uniform("x", (4,), "cpu"), again.uniform("x", (4,), "cpu"))


def test_recorded_draws_replay_in_order_and_report_leftovers():
    state = torch.get_rng_state()
    drawn = torch.rand(3, 2)
    records = {"seg/points": [torch.ones(2, 2), {"rng_state": state, "shape": [3, 2], "sum": drawn.double().sum()}],
               "seg/templates": [4, 7, 1], "det/synonyms": [0, 1]}
    draws = RecordedDraws(records)
    seg = draws.scoped("seg")
    assert torch.equal(seg.uniform("points", (2, 2), "cpu"), torch.ones(2, 2))
    assert torch.equal(seg.uniform("points", (3, 2), "cpu"), drawn)  # regenerated from the generator state
    assert seg.integers("templates", 81, 2) == [4, 7]
    assert draws.unused() == {"seg/templates": 1, "det/synonyms": 2}
    assert draws.scoped("det").choices("synonyms", [1, 2]) == [0, 1]
    with pytest.raises(IndexError, match="seg/points"):
        seg.uniform("points", (2, 2), "cpu")
    with pytest.raises(KeyError, match="seg/other"):
        seg.uniform("other", (1,), "cpu")
    with pytest.raises(ValueError, match="outside"):
        seg.integers("templates", 1, 1)


def test_recorded_draws_check_shape_and_generator_sum():
    state = torch.get_rng_state()
    drawn = torch.rand(4)
    wrong_sum = RecordedDraws({"k": [{"rng_state": state, "shape": [4], "sum": drawn.double().sum() + 1}]})
    with pytest.raises(ValueError, match="sum"):
        wrong_sum.uniform("k", (4,), "cpu")
    with pytest.raises(ValueError, match="shape"):
        RecordedDraws({"k": [torch.zeros(3)]}).uniform("k", (4,), "cpu")
