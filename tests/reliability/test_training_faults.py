"""Training faults that must end in a clear error (naming the file and the problem) with nothing lost: disk full while
saving, an OUTPUT_DIR that cannot be written, a truncated checkpoint on resume, corrupt or truncated annotation files.
(NaN losses / gradients, bad images and wrong-architecture checkpoints: see docs/reliability_training.md.)"""

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from detectron2.utils.env import seed_all_rng

from openseed.checkpoint.io import CheckpointError, atomic_write, load_checkpoint
from openseed.data.joint_loader import train_dataset_dicts
from openseed.data.registration.custom_coco import register_coco_json
from openseed.engine import checkpointer as checkpointer_module
from openseed.engine.checkpointer import CheckpointWriteError
from openseed.engine.defaults import check_output_dir
from tests.engine.engine_standins import StandInTrainer, standin_config


def standin_trainer(output_dir, max_iter, checkpoint_period) -> StandInTrainer:
    seed_all_rng(0)
    trainer = StandInTrainer(standin_config(output_dir, max_iter=max_iter, checkpoint_period=checkpoint_period))
    trainer.resume_or_load(resume=True)
    return trainer


def test_disk_full_while_saving_names_the_file_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    real_save = checkpointer_module.save_checkpoint

    def disk_full_at_model_0000005(obj, path):
        if Path(path).name != "model_0000005.pth":
            return real_save(obj, path)

        def write_until_full(handle):
            handle.write(b"\0" * 4096)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        atomic_write(path, write_until_full)

    monkeypatch.setattr(checkpointer_module, "save_checkpoint", disk_full_at_model_0000005)
    trainer = standin_trainer(tmp_path, max_iter=10, checkpoint_period=2)
    with pytest.raises(CheckpointWriteError) as error:
        trainer.train()
    message = str(error.value)
    assert str(tmp_path / "model_0000005.pth") in message and "No space left on device" in message
    assert str(tmp_path / "model_0000003.pth") in message and "--resume" in message
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000003.pth"
    assert not (tmp_path / "model_0000005.pth").exists() and not list(tmp_path.glob(".*.tmp"))
    assert load_checkpoint(tmp_path / "model_0000003.pth")["iteration"] == 3  # complete and readable


def test_truncated_checkpoint_on_resume_names_the_file(tmp_path):
    standin_trainer(tmp_path, max_iter=4, checkpoint_period=2).train()
    final = tmp_path / "model_final.pth"
    final.write_bytes(final.read_bytes()[: final.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=f"{final}: corrupt"):
        standin_trainer(tmp_path, max_iter=8, checkpoint_period=2)


def test_output_dir_that_cannot_be_created_fails_at_once(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(OSError, match=f"OUTPUT_DIR '{blocker / 'run'}' cannot be created or written"):
        check_output_dir(str(blocker / "run"))


def check_as_unprivileged_user(paths: list[Path]) -> list[str]:
    """`check_output_dir(path)`'s error for each path, checked in a forked child that runs as user nobody when the
    tests run as root (root may write into read-only directories)."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # the child only reports through the pipe and never returns into pytest
        try:
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            messages = []
            for path in paths:
                try:
                    check_output_dir(str(path))
                    messages.append("no error")
                except OSError as error:
                    messages.append(str(error))
            os.write(write_end, json.dumps(messages).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as report:
        messages = report.read()
    os.waitpid(child, 0)
    return json.loads(messages)


def test_read_only_output_dir_fails_before_training():
    base = Path(tempfile.mkdtemp(prefix="openseed_ro_"))
    try:
        base.chmod(0o755)
        read_only = base / "read_only"
        read_only.mkdir()
        read_only.chmod(0o555)
        existing, missing = check_as_unprivileged_user([read_only, read_only / "run"])
        assert f"OUTPUT_DIR '{read_only}' cannot be created or written (Permission denied)" in existing
        assert f"OUTPUT_DIR '{read_only / 'run'}' cannot be created or written (Permission denied)" in missing
        assert not list(read_only.iterdir())
    finally:
        (base / "read_only").chmod(0o755)
        shutil.rmtree(base)


@pytest.fixture
def boxes_json(tmp_path, synthetic_datasets_root) -> tuple[Path, Path]:
    """A copy of the synthetic box-only training json and its image folder."""
    source = Path(synthetic_datasets_root) / "synthetic" / "boxes" / "train"
    json_file = tmp_path / "instances.json"
    shutil.copy(source / "instances.json", json_file)
    return json_file, source / "images"


def test_truncated_annotation_file_is_named_at_registration(boxes_json):
    json_file, images = boxes_json
    json_file.write_text(json_file.read_text()[:-100])
    with pytest.raises(ValueError, match=f"annotation file {json_file} is corrupt or truncated"):
        register_coco_json("reliability_truncated_at_registration", str(json_file), str(images))


def test_annotation_file_corrupted_after_registration_is_named_when_training_reads_it(boxes_json):
    json_file, images = boxes_json
    name = register_coco_json("reliability_corrupted_later", str(json_file), str(images))
    assert len(train_dataset_dicts(name, filter_empty=False)) == len(json.loads(json_file.read_text())["images"])
    json_file.write_bytes(b"\xff\xfe garbage")
    with pytest.raises(ValueError, match=f"'{name}': annotation file {json_file} is corrupt or truncated"):
        train_dataset_dicts(name, filter_empty=False)


def test_missing_annotation_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "absent.json")):
        register_coco_json("reliability_missing_json", str(tmp_path / "absent.json"), str(tmp_path))

