"""Graceful stop on SIGTERM / SIGUSR1 (what SLURM, Kubernetes and torchrun send before killing a job).

`PreemptionCheckpointer` installs handlers that only record the signal. After the step in progress, all ranks agree
(a MAX all-reduce: a signal seen by one rank stops every rank at the same iteration), the checkpoint
`model_{iter:07d}` is written as a periodic one (model, optimizer, schedule, every rank's RNG state), one line names
the signal, the iteration and the file, and every process exits with status `PREEMPTED_EXIT_CODE` (75, EX_TEMPFAIL:
"try again"). `--resume` continues exactly as the uninterrupted run. A signal during the last iteration lets the run
complete normally. docs/slurm_requeue.sbatch requeues a job that ends with this status.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

import torch
import torch.distributed as dist
from detectron2.engine import HookBase
from detectron2.utils import comm

from openseed.engine.rng_state import gather_rng_states

PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
PREEMPTED_EXIT_CODE = 75

logger = logging.getLogger(__name__)


class TrainingPreempted(SystemExit):
    """Raised after the preemption checkpoint is written; exits the process with `PREEMPTED_EXIT_CODE`."""

    def __init__(self, message: str):
        super().__init__(PREEMPTED_EXIT_CODE)
        self.message = message


def agreed_signal(received: int, device: torch.device) -> int:
    """The largest signal number received by any rank (0: none); collective when several processes run."""
    if comm.get_world_size() == 1:
        return received
    flag = torch.tensor([received], dtype=torch.int64, device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag.item())


class PreemptionCheckpointer(HookBase):
    """Checkpoint and stop after the current step when SIGTERM or SIGUSR1 arrives (see the module docstring)."""

    def __init__(self, checkpointer, device: torch.device):
        self.checkpointer = checkpointer
        self.device = device
        self.received = 0
        self._previous_handlers: dict = {}
        self._owner_pid = os.getpid()

    def _record(self, signum: int, frame) -> None:
        if os.getpid() != self._owner_pid:
            # a process forked while training (e.g. panopticapi's evaluation pool, stopped with SIGTERM) inherits this
            # handler: there the signal keeps its default meaning, or `Pool.terminate()` would wait forever
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if not self.received:
            logger.warning(f"received {signal.Signals(signum).name}: stopping after the current iteration")
        self.received = signum

    def before_train(self) -> None:
        self._owner_pid = os.getpid()
        if threading.current_thread() is threading.main_thread():
            self._previous_handlers = {s: signal.signal(s, self._record) for s in PREEMPTION_SIGNALS}

    def after_step(self) -> None:
        signum = agreed_signal(self.received, self.device)
        iteration = self.trainer.iter
        if not signum or iteration + 1 >= self.trainer.max_iter:
            return
        name = f"model_{iteration:07d}"
        rng_states = gather_rng_states(self.device)
        if comm.is_main_process() and self._last_checkpoint() != f"{name}.pth":
            self.checkpointer.save(name, iteration=iteration, rng_states=rng_states)
        comm.synchronize()
        path = os.path.join(self.checkpointer.save_dir, f"{name}.pth")
        message = (f"preempted by {signal.Signals(signum).name} after iteration {iteration}: checkpoint {path} "
                   f"written, exiting with status {PREEMPTED_EXIT_CODE}; continue with --resume")
        logger.warning(message)
        raise TrainingPreempted(message)

    def _last_checkpoint(self) -> str:
        return os.path.basename(self.checkpointer.get_checkpoint_file()) if self.checkpointer.has_checkpoint() else ""

    def after_train(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers = {}
