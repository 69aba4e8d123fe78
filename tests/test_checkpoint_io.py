"""Checkpoint files: atomic writes, tensors-only loading, clear errors naming the file."""

from __future__ import annotations

import os

import pytest
import torch

from openseed.checkpoint import CheckpointError, atomic_write, load_checkpoint, save_checkpoint
from openseed.checkpoint import io as checkpoint_io


def sample_checkpoint():
    weight = torch.randn(3, 4)
    return {
        "model": {"a.weight": weight, "b.weight": weight, "c.index": torch.arange(6).view(2, 3)},
        "iteration": 7,
        "trainer": {"lr": [0.1, 0.01], "name": "adamw"},
    }


def test_torch_round_trip_keeps_values_containers_and_sharing(tmp_path):
    path = tmp_path / "out" / "model.pth"
    checkpoint = sample_checkpoint()
    save_checkpoint(checkpoint, path)
    loaded = load_checkpoint(path)
    assert loaded["iteration"] == 7 and loaded["trainer"] == {"lr": [0.1, 0.01], "name": "adamw"}
    for key, tensor in checkpoint["model"].items():
        assert torch.equal(loaded["model"][key], tensor) and loaded["model"][key].dtype == tensor.dtype
    assert loaded["model"]["a.weight"].data_ptr() == loaded["model"]["b.weight"].data_ptr()
    assert sorted(os.listdir(path.parent)) == ["model.pth"]


def test_safetensors_round_trip_stores_aliases_as_copies(tmp_path):
    path = tmp_path / "model.safetensors"
    state = sample_checkpoint()["model"]
    save_checkpoint(state, path)
    loaded = load_checkpoint(path)
    assert loaded.keys() == state.keys()
    for key, tensor in state.items():
        assert torch.equal(loaded[key], tensor) and loaded[key].dtype == tensor.dtype


def test_safetensors_refuses_non_tensors(tmp_path):
    with pytest.raises(CheckpointError, match="'iteration' is a int"):
        save_checkpoint({"iteration": 7}, tmp_path / "bad.safetensors")
    assert os.listdir(tmp_path) == []


def test_interrupted_write_leaves_no_partial_file(tmp_path):
    path = tmp_path / "model.pth"

    def write_half_then_fail(handle):
        handle.write(b"partial bytes")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, write_half_then_fail)
    assert os.listdir(tmp_path) == []


def test_interrupted_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "model.pth"
    save_checkpoint({"model": {"w": torch.ones(2)}}, path)
    before = path.read_bytes()

    def failing_save(obj, handle):
        handle.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_io.torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"model": {"w": torch.zeros(2)}}, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.pth"]


def test_missing_file_is_named(tmp_path):
    path = tmp_path / "nowhere.pth"
    with pytest.raises(CheckpointError, match=f"not found: {path}"):
        load_checkpoint(path)


@pytest.mark.parametrize("name", ["model.pth", "model.safetensors"])
def test_corrupt_file_is_named(tmp_path, name):
    path = tmp_path / name
    save_checkpoint({"w": torch.ones(100)}, path)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint(path)


def test_non_dict_checkpoint_is_refused(tmp_path):
    path = tmp_path / "tensor.pth"
    torch.save(torch.ones(2), path)
    with pytest.raises(CheckpointError, match="expected a dict"):
        load_checkpoint(path)


class _RunsCodeWhenUnpickled:
    """A pickle payload that would create a directory if its code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_pickle_with_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.ones(1)}, "payload": _RunsCodeWhenUnpickled(marker)}, path)
    with pytest.raises(CheckpointError, match=f"{path}: refused"):
        load_checkpoint(path)
    assert not marker.exists()
