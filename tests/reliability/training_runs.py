"""Helpers of the training reliability tests: short `tools/train_net.py` runs of any shipped config, started in their
own session (so that a kill reaches every process of a multi-process run), killed at a point read from their log,
and compared state by state with an uninterrupted run."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from openseed.checkpoint.io import load_checkpoint
from openseed.config import setup_cfg
from tests.engine.conftest import REPO_ROOT, TRAIN_NET, train_net_env

SHIPPED_CONFIGS = sorted((REPO_ROOT / "configs" / "tiny").glob("*.yaml")) + sorted(
    (REPO_ROOT / "configs" / "demo").glob("*.yaml")
)
MAX_ITER, CHECKPOINT_PERIOD = 8, 3  # checkpoints after iterations 2 and 5, model_final after 7


def short_run_args(config: Path, output_dir: Path, num_workers: int = 0, *extra: str) -> list[str]:
    """Command-line arguments of a short, small-image run of `config` (one image per dataset and process)."""
    one_per_dataset = "(" + "".join("1, " for _ in setup_cfg(str(config), []).DATASETS.TRAIN) + ")"
    return [
        "--config-file", str(config),
        "OUTPUT_DIR", str(output_dir),
        "INPUT.IMAGE_SIZE", "64",
        "DATALOADER.TRAIN_IMS_PER_GPU", one_per_dataset,
        "DATALOADER.NUM_WORKERS", str(num_workers),
        "MODEL.DECODER.TRAIN_NUM_POINTS", "256",
        "SOLVER.MAX_ITER", str(MAX_ITER),
        "SOLVER.CHECKPOINT_PERIOD", str(CHECKPOINT_PERIOD),
        "SOLVER.LOG_PERIOD", "1",
        "TEST.EVAL_PERIOD", "0",
        "DATASETS.TEST", "()",
        "SEED", "7",
        *extra,
    ]


def launcher_args(num_processes: int) -> list[str]:
    return ["--num-gpus", str(num_processes), "--dist-url", "auto"] if num_processes > 1 else []


def start(args: list[str], datasets_root: str, log_file: Path, script: Path | None = TRAIN_NET,
          env: dict | None = None) -> subprocess.Popen:
    """Start `python script args` (`python args` when `script` is None, e.g. `-m torch.distributed.run ...`) in a new
    session, output to `log_file`."""
    handle = open(log_file, "w")  # noqa: SIM115  (the process owns it)
    command = [sys.executable, *([str(script)] if script else []), *args]
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=train_net_env(datasets_root) | (env or {}), stdout=handle,
                               stderr=subprocess.STDOUT, start_new_session=True)
    handle.close()
    process.log_file = log_file
    return process


def finish(process: subprocess.Popen, timeout: float = 600) -> str:
    """Wait for `process`; returns its output."""
    try:
        process.wait(timeout=timeout)
    finally:
        kill_session(process)
    return Path(process.log_file).read_text()


def wait_for_log(process: subprocess.Popen, log: Path, pattern: str, timeout: float = 600) -> re.Match:
    """Poll the run's `log` until a line matches `pattern`; fails if the run ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.search(pattern, log.read_text()) if log.is_file() else None
        if match:
            return match
        if process.poll() is not None:
            raise AssertionError(f"the run ended (status {process.returncode}) before logging {pattern!r}:\n"
                                 + Path(process.log_file).read_text()[-5000:])
        time.sleep(0.02)
    kill_session(process)
    raise AssertionError(f"no log line {pattern!r} within {timeout} s:\n" + Path(process.log_file).read_text()[-5000:])


def kill_session(process: subprocess.Popen) -> None:
    """SIGKILL every process left of the run (launcher, ranks, data-loader workers), as a lost machine."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def last_checkpoint_iteration(output_dir: Path) -> int:
    name = (output_dir / "last_checkpoint").read_text()
    assert (output_dir / name).is_file(), f"last_checkpoint names {name}, which does not exist"
    return int(re.fullmatch(r"model_(\d{7})\.pth", name).group(1))


def assert_same_state(expected, actual, path: str = "checkpoint") -> None:
    """Bit-equal nested checkpoint contents (tensors, containers, numbers), naming the first difference."""
    if isinstance(expected, torch.Tensor):
        assert isinstance(actual, torch.Tensor) and expected.shape == actual.shape, path
        assert torch.equal(expected, actual), f"{path}: max |difference| {(expected.double() - actual.double()).abs().max()}"
    elif isinstance(expected, dict):
        assert isinstance(actual, dict) and expected.keys() == actual.keys(), path
        for key in expected:
            assert_same_state(expected[key], actual[key], f"{path}/{key}")
    elif isinstance(expected, (list, tuple)):
        assert isinstance(actual, (list, tuple)) and len(expected) == len(actual), path
        for index, (a, b) in enumerate(zip(expected, actual)):
            assert_same_state(a, b, f"{path}/{index}")
    else:
        assert expected == actual, f"{path}: {expected!r} != {actual!r}"


def final_state(output_dir: Path) -> dict:
    """model_final.pth: model, optimizer, LR scheduler, grad scaler, iteration and every rank's RNG state."""
    return load_checkpoint(output_dir / "model_final.pth")


def resume_and_compare(out: Path, args: list[str], reference: dict, datasets_root: str, expected_start: int,
                       script: Path | None = TRAIN_NET) -> str:
    """Resume the stopped run in `out` to the end (`--resume` after the overrides, as users type it); its final state
    must equal `reference` bit for bit. Returns the output."""
    assert not (out / "model_final.pth").exists()
    resumed = start([*args, "--resume"], datasets_root, out.parent / f"{out.name}_resumed.txt", script=script)
    output = finish(resumed)
    assert resumed.returncode == 0, output[-5000:]
    assert f"Starting training from iteration {expected_start}" in output
    assert_same_state(reference, final_state(out))
    return output
