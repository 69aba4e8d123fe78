"""Exact resume on every shipped config: a run SIGKILLed at a point read from its own log (or half way through a
checkpoint write) and resumed with `--resume` ends bit-identical to the uninterrupted run — model, optimizer, LR
schedule, grad scaler, iteration and every rank's RNG state — with 1 or 2 processes (gloo) and 0 or 2 data-loader
workers.

The default selection covers every config and each process and worker count; OPENSEED_FULL_RESUME_MATRIX=1 runs all
combinations (configs × {1, 2} processes × {0, 2} workers).
"""

import itertools
import os
import signal

import pytest

from tests.reliability.training_runs import (
    CHECKPOINT_PERIOD,
    SHIPPED_CONFIGS,
    finish,
    kill_session,
    last_checkpoint_iteration,
    launcher_args,
    resume_and_compare,
    short_run_args,
    start,
    wait_for_log,
)

pytestmark = pytest.mark.slow
DRIVER = os.path.join(os.path.dirname(__file__), "train_driver.py")
FULL_MATRIX = os.environ.get("OPENSEED_FULL_RESUME_MATRIX") == "1"
# Every config at least once, every process count and worker count at least once, the demo config both ways.
COVERING = {
    ("tiny_decoupled", 2, 2),
    ("tiny_decoupled_minilm", 1, 2),
    ("tiny_plain", 2, 0),
    ("openseed_demo", 1, 0),
    ("openseed_demo", 2, 2),
}
CASES = [
    pytest.param(config, processes, workers, id=f"{config.stem}-{processes}proc-{workers}workers", marks=(
        [] if FULL_MATRIX or (config.stem, processes, workers) in COVERING
        else [pytest.mark.skip(reason="outside the covering set; OPENSEED_FULL_RESUME_MATRIX=1 runs it")]
    ))
    for config, processes, workers in itertools.product(SHIPPED_CONFIGS, (1, 2), (0, 2))
]


@pytest.mark.parametrize(("config", "processes", "workers"), CASES)
def test_sigkill_at_a_logged_iteration_then_resume_is_exact(config, processes, workers, tmp_path, uninterrupted,
                                                             synthetic_datasets_root):
    out = tmp_path / "killed"
    args = [*launcher_args(processes), *short_run_args(config, out, workers)]
    killed = start(args, synthetic_datasets_root, tmp_path / "killed.txt")
    # the kill point: as soon as the log shows the first iteration after the first checkpoint
    first = wait_for_log(killed, out / "log.txt", r"Saving checkpoint to \S+model_(\d{7})\.pth")
    wait_for_log(killed, out / "log.txt", rf"iter: {int(first.group(1)) + 1}\b")
    kill_session(killed)
    resumed_from = last_checkpoint_iteration(out)
    assert resumed_from in (CHECKPOINT_PERIOD - 1, 2 * CHECKPOINT_PERIOD - 1)
    resume_and_compare(out, args, uninterrupted(config, processes), synthetic_datasets_root, resumed_from + 1)


def test_sigkill_during_a_checkpoint_write_resumes_from_the_previous_one(tmp_path, uninterrupted,
                                                                        synthetic_datasets_root):
    config = next(c for c in SHIPPED_CONFIGS if c.stem == "tiny_decoupled")
    out = tmp_path / "killed"
    args = short_run_args(config, out)
    killed = start(args, synthetic_datasets_root, tmp_path / "killed.txt", script=DRIVER,
                   env={"KILL_DURING_SAVE": "model_0000005"})
    finish(killed)
    assert killed.returncode == -signal.SIGKILL
    assert not (out / "model_0000005.pth").exists()
    assert [p.name.startswith(".model_0000005.pth.") for p in out.glob(".*.tmp")] == [True]  # the half-written file
    assert last_checkpoint_iteration(out) == 2
    resume_and_compare(out, args, uninterrupted(config, 1), synthetic_datasets_root, 3)
    assert not list(out.glob(".*.tmp")), "the partial file of the killed write is removed on resume"
