"""Training hooks: periodic checkpoints with per-rank RNG states, RNG-neutral periodic evaluation and a final
cross-rank parameter check.

A hook's `after_train` runs after a failed run too; "training completed" is `trainer.iter == trainer.max_iter`
(`TrainerBase.train` increments `iter` past the last iteration only on success).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import torch
from detectron2.engine import HookBase
from detectron2.engine.hooks import EvalHook
from detectron2.utils import comm

from openseed.engine.rng_state import gather_rng_states, preserved_rng_state

logger = logging.getLogger(__name__)


def _completed(trainer) -> bool:
    return trainer.iter >= trainer.max_iter


class PeriodicCheckpointer(HookBase):
    """Save `model_{iter:07d}` every `period` iterations and `model_final` after the last one.

    Runs on every rank: the RNG states of all ranks are gathered (a collective call) and the main rank writes them
    with the checkpoint, so that a resumed run draws the same random numbers as the uninterrupted one.
    """

    def __init__(self, checkpointer, period: int, device: torch.device):
        self.checkpointer = checkpointer
        self.period = int(period)
        self.device = device

    def after_step(self) -> None:
        iteration = self.trainer.iter
        is_final = iteration + 1 >= self.trainer.max_iter
        if not is_final and (self.period <= 0 or (iteration + 1) % self.period != 0):
            return
        rng_states = gather_rng_states(self.device)
        if comm.is_main_process():
            name = "model_final" if is_final else f"model_{iteration:07d}"
            self.checkpointer.save(name, iteration=iteration, rng_states=rng_states)


def numeric_leaves(results: Mapping, prefix: str = "") -> dict[str, float]:
    """Flatten nested evaluation results to `{"a/b/c": float}`, keeping only numbers."""
    flat = {}
    for key, value in results.items():
        name = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(numeric_leaves(value, name))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


class PeriodicEvaluation(EvalHook):
    """Detectron2's `EvalHook` (every `eval_period` iterations and after a completed run) that leaves the training
    RNG streams untouched, so that evaluating does not change the training run, and logs numeric results only."""

    def __init__(self, eval_period: int, eval_function: Callable[[], Mapping], device: torch.device):
        super().__init__(eval_period, lambda: numeric_leaves(eval_function() or {}), eval_after_train=True)
        self.device = device

    def _do_eval(self) -> None:
        with preserved_rng_state(self.device):
            super()._do_eval()

    def after_train(self) -> None:
        if _completed(self.trainer):
            self._do_eval()
        del self._func


def parameter_checksums(model: torch.nn.Module) -> torch.Tensor:
    """One float64 sum per parameter (CPU tensor of length len(named_parameters))."""
    with torch.no_grad():
        return torch.stack([p.detach().double().sum() for p in model.parameters()]).cpu()


class ParameterSyncCheck(HookBase):
    """After a completed multi-process run, check that every rank ends with the same parameters.

    Each rank logs its checksum (the sum of all parameter sums); a mismatch raises naming the parameters.
    """

    def __init__(self, model: torch.nn.Module):
        self.model = model

    def after_train(self) -> None:
        if comm.get_world_size() == 1 or not _completed(self.trainer):
            return
        local = parameter_checksums(self.model)
        logger.info(f"parameter checksum on rank {comm.get_rank()}: {local.sum().item()!r}")
        gathered = comm.all_gather(local)
        names = [name for name, _ in self.model.named_parameters()]
        differing = sorted({names[i] for other in gathered for i in (other != local).nonzero().flatten().tolist()})
        if differing:
            raise RuntimeError(f"parameters differ between ranks after training: {', '.join(differing[:20])}")
        logger.info(f"parameters identical on all {len(gathered)} ranks")
