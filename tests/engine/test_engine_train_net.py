"""`tools/train_net.py` end to end on the tiny config and the synthetic datasets (CPU): training with checkpoints,
metrics and evaluation; exact resume after SIGKILL; two gloo processes; errors that name the culprit."""

import json
import re
import signal
import subprocess
import sys

import pytest
import torch

from openseed.checkpoint import CheckpointMismatchError
from openseed.checkpoint.io import load_checkpoint, save_checkpoint
from openseed.config import setup_cfg
from openseed.engine import OpenSeeDTrainer
from openseed.engine.hooks import parameter_checksums
from tests.engine.conftest import FAST_TINY, REPO_ROOT, TINY_CONFIG, TRAIN_NET, run_train_net, train_net_env
from tests.tool_loader import load_tool

pytestmark = pytest.mark.slow


def read_metrics(output_dir) -> dict[int, dict]:
    records = {}
    for line in (output_dir / "metrics.json").read_text().splitlines():
        record = json.loads(line)
        records.setdefault(record["iteration"], {}).update(record)
    return records


def _popen(env: dict) -> dict:
    return {"cwd": REPO_ROOT, "env": env, "stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}


def _args(output_dir, max_iter, checkpoint_period, *extra):
    return [
        "--config-file", TINY_CONFIG,
        *FAST_TINY,
        "OUTPUT_DIR", str(output_dir),
        "SOLVER.MAX_ITER", str(max_iter),
        "SOLVER.CHECKPOINT_PERIOD", str(checkpoint_period),
        *extra,
    ]


def test_tiny_training_writes_checkpoints_metrics_and_evaluates(tmp_path, synthetic_datasets_root):
    out = tmp_path / "run"
    result = run_train_net(
        _args(out, 24, 12, "SOLVER.LOG_PERIOD", "4", "TEST.EVAL_PERIOD", "0"), synthetic_datasets_root
    )
    assert result.returncode == 0, result.stdout[-5000:]
    assert sorted(p.name for p in out.glob("*.pth")) == ["model_0000011.pth", "model_final.pth"]
    final = load_checkpoint(out / "model_final.pth")
    assert final["iteration"] == 23 and len(final["rng_states"]) == 1
    metrics = read_metrics(out)
    assert sorted(i for i, r in metrics.items() if "total_loss" in r) == [3, 7, 11, 15, 19, 23]
    for record in metrics.values():
        if "total_loss" in record:
            assert record["synthetic_panoptic_train.total_loss"] > 0 and record["synthetic_boxes_train.total_loss"] > 0
            assert torch.isfinite(torch.tensor(record["total_loss"]))
    assert re.search(r"eta: \d+:\d\d:\d\d\s+iter: 19\s+total_loss", result.stdout)
    assert (out / "config.yaml").is_file() and (out / "log.txt").is_file()
    # the final evaluation is logged at iteration MAX_ITER, with the results stored per dataset
    for key in ("panoptic_seg/PQ", "segm/AP", "bbox/AP", "sem_seg/mIoU"):
        assert 0.0 <= metrics[24][f"synthetic_panoptic_val/{key}"] <= 100.0, key
    stored = json.loads((out / "eval" / "iter_0000024" / "synthetic_panoptic_val" / "results.json").read_text())
    assert stored["results"]["panoptic_seg"]["PQ"] == metrics[24]["synthetic_panoptic_val/panoptic_seg/PQ"]

    # --eval-only on the final checkpoint reproduces the evaluation made at the end of training
    evaluation = run_train_net(
        ["--eval-only", *_args(tmp_path / "eval_only", 1, 0, "MODEL.WEIGHTS", str(out / "model_final.pth"))],
        synthetic_datasets_root,
    )
    assert evaluation.returncode == 0, evaluation.stdout[-5000:]
    again = json.loads((tmp_path / "eval_only" / "inference" / "synthetic_panoptic_val" / "results.json").read_text())
    assert again["results"] == stored["results"]
    assert "synthetic_panoptic_val" in (tmp_path / "eval_only" / "inference" / "summary.md").read_text()


def test_resume_after_sigkill_repeats_the_uninterrupted_run(tmp_path, synthetic_datasets_root):
    args = ("SOLVER.LOG_PERIOD", "1", "DATASETS.TEST", "()")
    full, killed = tmp_path / "full", tmp_path / "killed"
    env = train_net_env(synthetic_datasets_root)
    driver = REPO_ROOT / "tests" / "engine" / "kill_driver.py"
    # The uninterrupted run and the run killed after iteration 5 (checkpoint after iteration 3) run side by side.
    processes = [
        subprocess.Popen([sys.executable, str(TRAIN_NET), *_args(full, 8, 4, *args)], **_popen(env)),
        subprocess.Popen([sys.executable, str(driver), *_args(killed, 8, 4, *args)],
                         **_popen(env | {"KILL_AFTER_ITER": "5"})),
    ]
    (full_output, _), (killed_output, _) = (p.communicate(timeout=300) for p in processes)
    assert processes[0].returncode == 0, full_output[-5000:]
    assert processes[1].returncode == -signal.SIGKILL, killed_output[-5000:]
    assert (killed / "last_checkpoint").read_text() == "model_0000003.pth"
    assert not (killed / "model_final.pth").exists()

    resumed = run_train_net(["--resume", *_args(killed, 8, 4, *args)], synthetic_datasets_root)
    assert resumed.returncode == 0, resumed.stdout[-5000:]
    assert "Loading from" in resumed.stdout and "Starting training from iteration 4" in resumed.stdout

    full_metrics, resumed_metrics = read_metrics(full), read_metrics(killed)
    for iteration in range(4, 8):
        a, b = full_metrics[iteration], resumed_metrics[iteration]
        losses = [k for k in a if "loss" in k]
        assert len(losses) > 50
        assert {k: b[k] for k in losses} == {k: a[k] for k in losses}, iteration
        assert b["lr"] == a["lr"] and b["grad_norm"] == a["grad_norm"]
    full_state = load_checkpoint(full / "model_final.pth")["model"]
    resumed_state = load_checkpoint(killed / "model_final.pth")["model"]
    assert full_state.keys() == resumed_state.keys()
    for name, value in full_state.items():
        assert torch.equal(value, resumed_state[name]), name


def test_two_cpu_processes_end_with_identical_parameters(tmp_path, synthetic_datasets_root):
    out = tmp_path / "ddp"
    result = run_train_net(
        ["--num-gpus", "2", "--dist-url", "auto", *_args(out, 4, 0, "DATASETS.TEST", "()")], synthetic_datasets_root
    )
    assert result.returncode == 0, result.stdout[-5000:]
    checksums = {}
    for log_name, rank in (("log.txt", 0), ("log.txt.rank1", 1)):
        log = (out / log_name).read_text()
        checksums[rank] = float(re.search(rf"parameter checksum on rank {rank}: (\S+)", log).group(1))
        assert "parameters identical on all 2 ranks" in log
    saved = load_checkpoint(out / "model_final.pth")["model"]
    assert checksums[0] == checksums[1]
    model = OpenSeeDTrainer.build_model(setup_cfg(TINY_CONFIG, FAST_TINY))
    model.load_state_dict(saved)
    assert parameter_checksums(model).sum().item() == checksums[0]


@pytest.fixture(scope="module")
def train_net_module():
    return load_tool("train_net")


def test_errors_name_the_key_the_dataset_and_the_parameters(tmp_path, train_net_module):
    with pytest.raises(KeyError, match="SOLVER.NOT_A_KEY"):
        train_net_module.cli(_args(tmp_path / "a", 2, 0, "SOLVER.NOT_A_KEY", "1"))

    with pytest.raises(KeyError, match=r"DATASETS.TRAIN.*no_such_dataset"):
        train_net_module.cli(_args(tmp_path / "b", 2, 0, "DATASETS.TRAIN", "('synthetic_panoptic_train', 'no_such_dataset')"))

    plain = OpenSeeDTrainer.build_model(setup_cfg(str(REPO_ROOT / "configs/tiny/tiny_plain.yaml"), FAST_TINY))
    save_checkpoint({"model": plain.state_dict()}, tmp_path / "plain.pth")
    with pytest.raises(CheckpointMismatchError) as error:
        train_net_module.cli(_args(tmp_path / "c", 2, 0, "MODEL.WEIGHTS", str(tmp_path / "plain.pth")))
    assert "plain.pth does not match the model architecture" in str(error.value)
    assert "sem_seg_head.predictor.query_feat.weight" in str(error.value)
