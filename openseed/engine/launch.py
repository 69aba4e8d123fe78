"""Multi-process launch like `detectron2.engine.launch`, with the process-group backend chosen from the training
device (`MODEL.DEVICE`) instead of from `torch.cuda.is_available()`: NCCL on CUDA, gloo on CPU, so that
`--num-gpus N` also runs N CPU processes (tests, machines without GPUs).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.engine.launch import _find_free_port
from detectron2.utils import comm

DEFAULT_TIMEOUT = timedelta(minutes=30)

logger = logging.getLogger(__name__)


def backend_for_device(device: str) -> str:
    """"nccl" for a CUDA device string ("cuda", "cuda:1"), "gloo" otherwise."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


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
    """Run `main_func(*args)` in `num_processes_per_machine` processes on each of `num_machines` machines
    (directly in this process when the world size is 1). `dist_url="auto"` picks a free local port."""
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
    mp.start_processes(
        _distributed_worker,
        nprocs=num_processes_per_machine,
        args=(main_func, backend, world_size, num_processes_per_machine, machine_rank, dist_url, args, timeout),
        daemon=False,
    )


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
    elif "OMP_NUM_THREADS" not in os.environ:
        # CPU processes share the machine's cores; oversubscribed intra-op threads slow every op down many times.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // num_processes_per_machine))
    dist.init_process_group(
        backend=backend, init_method=dist_url, world_size=world_size, rank=global_rank, timeout=timeout
    )
    comm.create_local_process_group(num_processes_per_machine)
    comm.synchronize()
    main_func(*args)
    dist.destroy_process_group()
