"""Preemption and lost processes: SIGTERM / SIGUSR1 finish the current step, write a checkpoint and exit with status
75 and a one-line message, under today's launcher, `torchrun` and SLURM (`srun` simulated by its environment);
resuming from that checkpoint is exact. A process that dies or hangs in a 2-process run makes the run fail with an
error naming it, within the configured timeout."""

import os
import re
import signal
import socket
import time
from pathlib import Path

import pytest

from openseed.engine.launch import WORKER_GRACE_PERIOD_S
from openseed.engine.preemption import PREEMPTED_EXIT_CODE
from tests.engine.conftest import REPO_ROOT
from tests.reliability.training_runs import (
    SHIPPED_CONFIGS,
    TRAIN_NET,
    assert_same_state,
    final_state,
    finish,
    last_checkpoint_iteration,
    launcher_args,
    resume_and_compare,
    short_run_args,
    start,
    wait_for_log,
)

pytestmark = pytest.mark.slow
TINY = next(c for c in SHIPPED_CONFIGS if c.stem == "tiny_decoupled")
PREEMPTED_LINE = r"preempted by (SIGTERM|SIGUSR1) after iteration (\d+): checkpoint \S+model_(\d{7})\.pth written"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def check_preempted(out, output: str, signal_name: str) -> int:
    """The preemption line names the signal and a checkpoint that `last_checkpoint` points to; its iteration."""
    match = re.search(PREEMPTED_LINE, output)
    assert match and match.group(1) == signal_name, output[-5000:]
    iteration = int(match.group(2))
    assert int(match.group(3)) == iteration == last_checkpoint_iteration(out)
    assert not (out / "model_final.pth").exists()
    return iteration


def test_sigterm_writes_a_checkpoint_exits_75_and_resumes_exactly(tmp_path, uninterrupted, synthetic_datasets_root):
    out = tmp_path / "run"
    args = short_run_args(TINY, out, 2)  # with data-loader workers, which must not break the stop
    run = start(args, synthetic_datasets_root, tmp_path / "run.txt")
    wait_for_log(run, out / "log.txt", r"iter: 3\b")
    os.killpg(run.pid, signal.SIGTERM)  # every process, data-loader workers included (as `scancel --signal`)
    output = finish(run)
    assert run.returncode == PREEMPTED_EXIT_CODE, output[-5000:]
    iteration = check_preempted(out, output, "SIGTERM")
    assert 3 <= iteration < 7
    resume_and_compare(out, args, uninterrupted(TINY, 1), synthetic_datasets_root, iteration + 1)


def test_sigusr1_to_the_launcher_of_two_processes(tmp_path, uninterrupted, synthetic_datasets_root):
    out = tmp_path / "run"
    args = [*launcher_args(2), *short_run_args(TINY, out)]
    run = start(args, synthetic_datasets_root, tmp_path / "run.txt")
    wait_for_log(run, out / "log.txt", r"iter: 3\b")
    run.send_signal(signal.SIGUSR1)  # the launcher forwards it to both ranks
    output = finish(run)
    assert run.returncode == PREEMPTED_EXIT_CODE, output[-5000:]
    iteration = check_preempted(out, output, "SIGUSR1")
    assert re.search(PREEMPTED_LINE, (out / "log.txt.rank1").read_text())  # rank 1 stopped at the same iteration
    resume_and_compare(out, args, uninterrupted(TINY, 2), synthetic_datasets_root, iteration + 1)


def slurm_task_env(rank: int, port: int) -> dict:
    """The variables `srun --ntasks 2 --ntasks-per-node 2` sets for task `rank`, plus the batch script's exports."""
    return {"SLURM_JOB_ID": "4242", "SLURM_STEP_ID": "0", "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank),
            "SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}


def start_slurm_tasks(args, datasets_root, log_dir, name):
    port = free_port()
    return [start(args, datasets_root, log_dir / f"{name}_task{rank}.txt", env=slurm_task_env(rank, port))
            for rank in (0, 1)]


def test_slurm_tasks_preempted_by_sigterm_resume_exactly(tmp_path, uninterrupted, synthetic_datasets_root):
    out = tmp_path / "run"
    args = short_run_args(TINY, out)
    tasks = start_slurm_tasks(args, synthetic_datasets_root, tmp_path, "run")
    wait_for_log(tasks[0], out / "log.txt", r"iter: 3\b")
    assert "Rank 1 of 2" in (out / "log.txt.rank1").read_text()
    tasks[1].send_signal(signal.SIGTERM)  # one task signalled: the ranks agree and both stop at the same step
    outputs = [finish(task) for task in tasks]
    assert [task.returncode for task in tasks] == [PREEMPTED_EXIT_CODE] * 2, outputs[0][-3000:] + outputs[1][-3000:]
    iteration = check_preempted(out, outputs[0], "SIGTERM")
    tasks = start_slurm_tasks([*args, "--resume"], synthetic_datasets_root, tmp_path, "resumed")
    outputs = [finish(task) for task in tasks]
    assert [task.returncode for task in tasks] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    assert f"Starting training from iteration {iteration + 1}" in outputs[0]
    assert_same_state(uninterrupted(TINY, 2), final_state(out))


def test_torchrun_sigterm_then_resume_is_exact(tmp_path, uninterrupted, synthetic_datasets_root):
    out = tmp_path / "run"
    args = short_run_args(TINY, out)

    def torchrun(*train_net_args):
        return ["-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
                "--master-port", str(free_port()), str(TRAIN_NET), *train_net_args]

    run = start(torchrun(*args), synthetic_datasets_root, tmp_path / "run.txt", script=None)
    wait_for_log(run, out / "log.txt", r"iter: 3\b")
    assert "Rank 1 of 2" in (out / "log.txt.rank1").read_text()
    run.send_signal(signal.SIGTERM)  # torchrun passes it on to its workers
    finish(run)
    assert run.returncode != 0
    iteration = check_preempted(out, (out / "log.txt").read_text(), "SIGTERM")
    resume_and_compare(out, torchrun(*args), uninterrupted(TINY, 2), synthetic_datasets_root, iteration + 1,
                       script=None)


def rank_pid(out, rank: int) -> int:
    log = out / ("log.txt" if rank == 0 else f"log.txt.rank{rank}")
    return int(re.search(rf"Rank {rank} of 2 \(pid (\d+)\)", log.read_text()).group(1))


def test_a_killed_rank_stops_the_run_with_an_error_naming_it(tmp_path, synthetic_datasets_root):
    out = tmp_path / "run"
    run = start([*launcher_args(2), *short_run_args(TINY, out, 0, "SOLVER.MAX_ITER", "1000")], synthetic_datasets_root,
                tmp_path / "run.txt")
    wait_for_log(run, out / "log.txt", r"iter: 2\b")
    os.kill(rank_pid(out, 1), signal.SIGKILL)
    begin = time.monotonic()
    output = finish(run, timeout=120)
    assert run.returncode not in (0, PREEMPTED_EXIT_CODE)
    assert "the process of rank 1" in output and "SIGKILL" in output, output[-3000:]
    assert time.monotonic() - begin < 60


def test_a_hung_rank_fails_the_run_after_the_configured_timeout(tmp_path, synthetic_datasets_root):
    out = tmp_path / "run"
    run = start([*launcher_args(2), *short_run_args(TINY, out, 0, "SOLVER.MAX_ITER", "1000", "DIST_TIMEOUT_S", "10")],
                synthetic_datasets_root, tmp_path / "run.txt")
    wait_for_log(run, out / "log.txt", r"iter: 2\b")
    os.kill(rank_pid(out, 1), signal.SIGSTOP)
    begin = time.monotonic()
    output = finish(run, timeout=180)
    assert run.returncode not in (0, PREEMPTED_EXIT_CODE)
    assert "Timed out" in output and "the process of rank 0 failed" in output, output[-3000:]
    assert time.monotonic() - begin < 10 + 2 * WORKER_GRACE_PERIOD_S + 30  # timeout, then the launcher's stop


def failing_rank_env(rank: int, iteration: int) -> dict:
    """Environment that makes rank `rank` raise at `iteration` (tests/reliability/fault_injection)."""
    return {"PYTHONPATH": f"{Path(__file__).parent / 'fault_injection'}{os.pathsep}{REPO_ROOT}",
            "OPENSEED_FAIL_RANK": str(rank), "OPENSEED_FAIL_ITERATION": str(iteration)}


def test_a_rank_that_raises_stops_the_run_with_its_error(tmp_path, synthetic_datasets_root):
    """With data-loader workers: the failed rank must exit (its workers stopped), so that the launcher reports it."""
    out = tmp_path / "run"
    run = start([*launcher_args(2), *short_run_args(TINY, out, 2, "SOLVER.MAX_ITER", "1000")], synthetic_datasets_root,
                tmp_path / "run.txt", env=failing_rank_env(1, 3))
    output = finish(run, timeout=300)
    assert run.returncode not in (0, PREEMPTED_EXIT_CODE)
    assert "the process of rank 1 failed" in output, output[-3000:]
    assert "RuntimeError: injected fault on rank 1 at iteration 3" in output


def test_srun_tasks_exit_when_one_raises(tmp_path, synthetic_datasets_root):
    """No launcher joins `srun` tasks: the failed task exits, the other's next collective fails (at the latest after
    `DIST_TIMEOUT_S`) and it exits too."""
    out = tmp_path / "run"
    args = short_run_args(TINY, out, 2, "SOLVER.MAX_ITER", "1000", "DIST_TIMEOUT_S", "20")
    port = free_port()
    tasks = [start(args, synthetic_datasets_root, tmp_path / f"task{rank}.txt",
                   env=slurm_task_env(rank, port) | failing_rank_env(1, 3)) for rank in (0, 1)]
    outputs = [finish(task, timeout=300) for task in tasks]
    assert all(task.returncode not in (0, PREEMPTED_EXIT_CODE) for task in tasks), outputs[0][-3000:]
    assert "RuntimeError: injected fault on rank 1 at iteration 3" in outputs[1]


def _sleep_forever(started):
    import time

    started.set()
    time.sleep(60)


def test_processes_forked_while_training_keep_the_default_sigterm():
    """panopticapi's evaluation pool is forked during the final evaluation and stopped with SIGTERM
    (`Pool.terminate`): the training handler must not make its workers ignore it."""
    import multiprocessing
    import signal as signal_module

    import torch

    from openseed.engine.preemption import PreemptionCheckpointer

    hook = PreemptionCheckpointer(checkpointer=None, device=torch.device("cpu"))
    hook.before_train()
    try:
        context = multiprocessing.get_context("fork")
        started = context.Event()
        child = context.Process(target=_sleep_forever, args=(started,))
        child.start()
        # a signal that arrives while the child is still inside fork() is dropped by CPython's after-fork reset
        assert started.wait(timeout=30)
        child.terminate()
        child.join(timeout=10)
        assert child.exitcode == -signal_module.SIGTERM
        assert hook.received == 0  # the parent's own state is untouched
    finally:
        if child.is_alive():
            child.kill()
        hook.after_train()
