"""Multi-process launch: Detectron2's `launch` with the process-group backend chosen from the training device, plus
processes started by `torchrun` or SLURM's `srun`.

- Spawned (`--num-gpus N`): this process starts N workers per machine (NCCL on CUDA, gloo on CPU, so that
  `--num-gpus N` also runs N CPU processes). SIGTERM / SIGUSR1 sent to it are forwarded to the workers (see
  `preemption.py`); a worker that dies stops the others and the launcher exits with an error naming its rank.
- `torchrun` (env://): `RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `LOCAL_WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`.
- SLURM (one `srun` task per process): `SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_LOCALID`, `SLURM_NTASKS_PER_NODE`
  (or `SLURM_STEP_TASKS_PER_NODE`), with `MASTER_ADDR` / `MASTER_PORT` exported by the batch script
  (docs/slurm_requeue.sbatch). Recognised inside a job step (`SLURM_STEP_ID` set), not in the batch script itself.
Collectives fail after `timeout` (config `DIST_TIMEOUT_S`) instead of waiting forever for a hung process.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.engine.launch import _find_free_port
from detectron2.utils import comm

from openseed.engine.preemption import PREEMPTED_EXIT_CODE, PREEMPTION_SIGNALS

DEFAULT_TIMEOUT = timedelta(minutes=30)
# Seconds the other workers get to finish on their own (e.g. a preemption checkpoint) after one has exited.
WORKER_GRACE_PERIOD_S = 15

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProcessPlacement:
    """Where this process stands in a run started by an external launcher."""

    launcher: str  # "torchrun" or "slurm"
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int


def backend_for_device(device: str) -> str:
    """"nccl" for a CUDA device string ("cuda", "cuda:1"), "gloo" otherwise."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def _int_variable(environ, name: str) -> int:
    value = environ.get(name, "")
    if not re.fullmatch(r"\d+", value):
        raise ValueError(f"environment variable {name}={value!r}: expected a non-negative integer")
    return int(value)


def external_placement(environ=os.environ) -> ProcessPlacement | None:
    """This process's placement when `torchrun` or `srun` started it, else None (`--num-gpus` spawning applies)."""
    if "TORCHELASTIC_RUN_ID" in environ or {"RANK", "WORLD_SIZE", "LOCAL_RANK"} <= environ.keys():
        world_size = _int_variable(environ, "WORLD_SIZE")
        local_world_size = _int_variable(environ, "LOCAL_WORLD_SIZE") if "LOCAL_WORLD_SIZE" in environ else world_size
        return ProcessPlacement("torchrun", _int_variable(environ, "RANK"), world_size,
                                _int_variable(environ, "LOCAL_RANK"), local_world_size)
    if "SLURM_PROCID" in environ and "SLURM_STEP_ID" in environ:
        tasks_per_node = environ.get("SLURM_NTASKS_PER_NODE") or environ.get("SLURM_STEP_TASKS_PER_NODE", "")
        match = re.match(r"\d+", tasks_per_node)  # "4" or "4(x2)": the first node's count
        if match is None:
            raise ValueError(f"SLURM_NTASKS_PER_NODE / SLURM_STEP_TASKS_PER_NODE = {tasks_per_node!r}: expected tasks "
                             "per node (start one task per process: srun --ntasks-per-node=N)")
        return ProcessPlacement("slurm", _int_variable(environ, "SLURM_PROCID"), _int_variable(environ, "SLURM_NTASKS"),
                                _int_variable(environ, "SLURM_LOCALID"), int(match.group(0)))
    return None


def launch(
    main_func: Callable,
    num_processes_per_machine: int,
    *,
    device: str,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: str | None = None,
    args: tuple = (),
    timeout: timedelta = DEFAULT_TIMEOUT,
) -> None:
    """Run `main_func(*args)`: in this process when `torchrun`/`srun` started it (`external_placement`), else in
    `num_processes_per_machine` processes on each of `num_machines` machines (directly in this process when the
    world size is 1). `dist_url="auto"` picks a free local port."""
    placement = external_placement()
    if placement is not None:
        if num_processes_per_machine != 1 or num_machines != 1:
            raise ValueError(f"started by {placement.launcher}, which starts every process itself: drop --num-gpus "
                             "and --num-machines")
        _run_placed(main_func, placement, device, args, timeout)
        return
    world_size = num_machines * num_processes_per_machine
    if world_size == 1:
        main_func(*args)
        return
    if dist_url == "auto":
        if num_machines != 1:
            raise ValueError("--dist-url auto only works on a single machine")
        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    backend = backend_for_device(device)
    if backend == "nccl" and num_processes_per_machine > torch.cuda.device_count():
        raise ValueError(f"{num_processes_per_machine} processes per machine but only {torch.cuda.device_count()} GPUs")
    context = mp.start_processes(
        _distributed_worker,
        nprocs=num_processes_per_machine,
        args=(main_func, backend, world_size, num_processes_per_machine, machine_rank, dist_url, args, timeout),
        daemon=False,
        join=False,
    )
    _join_workers(context, machine_rank * num_processes_per_machine)


def _join_workers(context, first_rank: int) -> None:
    """Wait for the spawned workers, forwarding preemption signals to them; a worker that fails stops the others
    (torch terminates them) and this process exits with an error naming its rank (or status 75 when preempted)."""

    def forward(signum, frame):
        for process in context.processes:
            if process.is_alive():
                os.kill(process.pid, signum)

    previous = {signum: signal.signal(signum, forward) for signum in PREEMPTION_SIGNALS}
    try:
        while not context.join(grace_period=WORKER_GRACE_PERIOD_S):
            pass
    except mp.ProcessRaisedException as error:
        logger.error(f"the process of rank {first_rank + error.error_index} failed with the error below; the other "
                     "processes were stopped")
        raise
    except mp.ProcessExitedException as error:
        rank = first_rank + error.error_index
        if error.exit_code == PREEMPTED_EXIT_CODE:
            sys.exit(PREEMPTED_EXIT_CODE)
        how = f"was killed by signal {error.signal_name}" if error.signal_name else f"exited with status {error.exit_code}"
        logger.error(f"the process of rank {rank} {how}; the other processes were stopped")
        raise SystemExit(f"training failed: the process of rank {rank} (pid {error.error_pid}) {how}") from None
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _init_process_group(backend: str, init_method: str, world_size: int, rank: int, local_world_size: int,
                        timeout: timedelta) -> None:
    if backend == "gloo" and "OMP_NUM_THREADS" not in os.environ:
        # CPU processes share the machine's cores; oversubscribed intra-op threads slow every op down many times.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world_size))
    dist.init_process_group(backend=backend, init_method=init_method, world_size=world_size, rank=rank,
                            timeout=timeout)
    comm.create_local_process_group(local_world_size)
    comm.synchronize()


def _run_placed(main_func: Callable, placement: ProcessPlacement, device: str, args: tuple,
                timeout: timedelta) -> None:
    if placement.world_size == 1:
        main_func(*args)
        return
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
    if missing:
        raise ValueError(f"started by {placement.launcher} with {placement.world_size} processes but {missing} "
                         "is not set: export the address and a free port of the rank-0 host (docs/slurm_requeue.sbatch)")
    backend = backend_for_device(device)
    if backend == "nccl":
        torch.cuda.set_device(placement.local_rank)
    _init_process_group(backend, "env://", placement.world_size, placement.rank, placement.local_world_size, timeout)
    main_func(*args)
    dist.destroy_process_group()


def _distributed_worker(
    local_rank: int,
    main_func: Callable,
    backend: str,
    world_size: int,
    num_processes_per_machine: int,
    machine_rank: int,
    dist_url: str,
    args: tuple,
    timeout: timedelta,
) -> None:
    global_rank = machine_rank * num_processes_per_machine + local_rank
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    _init_process_group(backend, dist_url, world_size, global_rank, num_processes_per_machine, timeout)
    main_func(*args)
    dist.destroy_process_group()
