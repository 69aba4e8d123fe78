"""One optimisation step over a joint batch (docs/official_behaviours.md §8, §11.1).

`JointStepTrainer.run_step`: next joint batch `{dataset_name: list[dict]}` → forward under autocast (CUDA AMP only)
→ the model's losses (already prefixed `dataset.loss_key` and weighted) summed → stop on a non-finite loss on any
rank → one backward (scaled for fp16) → unscale → full-model gradient clipping → optimizer step.
Logged per step: `total_loss`, every loss key, `{dataset}.total_loss` per dataset, `grad_norm`, `data_time`.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict

import numpy as np
import torch
import torch.distributed as dist
from detectron2.engine import SimpleTrainer
from detectron2.utils import comm
from detectron2.utils.events import get_event_storage

from openseed.engine.optimizer import clip_full_model_gradients


def dataset_loss_sums(loss_values: dict[str, float]) -> dict[str, float]:
    """`{"coco.loss_a": 1, "coco.loss_b": 2, "o365.loss_a": 3}` -> `{"coco.total_loss": 3, "o365.total_loss": 3}`."""
    sums: dict[str, float] = defaultdict(float)
    for key, value in loss_values.items():
        dataset, separator, _ = key.rpartition(".")
        if separator:
            sums[f"{dataset}.total_loss"] += value
    return dict(sums)


class JointStepTrainer(SimpleTrainer):
    """`SimpleTrainer` whose step handles AMP, non-finite losses and full-model clipping for joint batches."""

    def __init__(
        self,
        model: torch.nn.Module,
        data_loader,
        optimizer: torch.optim.Optimizer,
        *,
        device: torch.device,
        amp_dtype: torch.dtype | None = None,
        clip_max_norm: float | None = None,
        clip_norm_type: float = 2.0,
    ):
        """
        Args:
            model: returns a dict of scalar losses for a training batch (possibly wrapped in DDP).
            data_loader: iterable of training batches (may be None until `reset_data_loader`).
            device: the training device; autocast and the cross-rank finite check run there.
            amp_dtype: autocast dtype (float16 adds a GradScaler), None for float32.
            clip_max_norm: clip the global gradient norm to this value; None disables clipping.
        """
        super().__init__(model, data_loader, optimizer)
        self.device = device
        self.amp_dtype = amp_dtype
        self.clip_max_norm = clip_max_norm
        self.clip_norm_type = clip_norm_type
        self.grad_scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
        self._first_batch = None

    def start_data_iterator(self) -> None:
        """Create the data iterator and fetch its first batch now.

        Starting a loader draws from the global torch RNG (DataLoader worker seeds; generator-based iterators only
        start on their first `next`). Doing it here, before the training RNG state is restored on resume, keeps
        those draws out of the random stream that the training steps see.
        """
        self._data_loader_iter_obj = iter(self.data_loader)
        self._first_batch = next(self._data_loader_iter_obj)

    def stop_data_iterator(self) -> None:
        """Close the data iterator, which shuts its data-loader worker processes down now.

        Called when training ends, also by an error: otherwise the iterator stays referenced by the traceback and, with
        `DATALOADER.NUM_WORKERS` > 0, the process waits for its still running workers at exit (a rank that raised in
        a multi-process run then never exits and its launcher never learns of the error).
        """
        iterator, self._data_loader_iter_obj, self._first_batch = self._data_loader_iter_obj, None, None
        if hasattr(iterator, "close"):
            iterator.close()

    def _next_batch(self):
        if self._first_batch is not None:
            batch, self._first_batch = self._first_batch, None
            return batch
        return next(self._data_loader_iter)

    def run_step(self) -> None:
        assert self.model.training, "[JointStepTrainer] model was changed to eval mode!"
        start = time.perf_counter()
        data = self._next_batch()
        data_time = time.perf_counter() - start
        criterion = getattr(getattr(self.model, "module", self.model), "criterion", None)
        if criterion is not None:
            criterion.iteration = self.iter  # drives the ramp of the Objects365 pseudo-mask loss

        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            loss_dict = self.model(data)
        if not loss_dict:
            raise ValueError(f"iteration {self.iter}: the model returned no losses for datasets {list(data)}")
        loss_values = self._checked_loss_values(loss_dict)
        total_loss = sum(loss_dict.values())

        self.optimizer.zero_grad(set_to_none=True)
        self.grad_scaler.scale(total_loss).backward()
        self.after_backward()

        self.grad_scaler.unscale_(self.optimizer)
        grad_norm = None
        if self.clip_max_norm is not None:
            grad_norm = float(clip_full_model_gradients(self.optimizer, self.clip_max_norm, self.clip_norm_type))
            if not math.isfinite(grad_norm) and not self.grad_scaler.is_enabled():
                raise FloatingPointError(
                    f"gradient norm became {grad_norm} at iteration {self.iter} with finite losses {loss_values}; "
                    "training stopped before the optimizer step, the last checkpoint is kept"
                )
        self._write_step_metrics(loss_values, data_time, grad_norm)
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()

    def _checked_loss_values(self, loss_dict: dict[str, torch.Tensor]) -> dict[str, float]:
        """The losses as floats (one device sync); raises `FloatingPointError` on every rank if any rank has a
        non-finite loss, before any backward or optimizer step."""
        stacked = torch.stack([value.detach().float().reshape(()) for value in loss_dict.values()])
        values = stacked.cpu()
        bad_ranks = torch.zeros(comm.get_world_size(), device=stacked.device)
        bad_ranks[comm.get_rank()] = float(not bool(torch.isfinite(values).all()))
        if comm.get_world_size() > 1:
            dist.all_reduce(bad_ranks)
        loss_values = dict(zip(loss_dict, values.tolist()))
        if bad_ranks.any():
            ranks = bad_ranks.nonzero().flatten().tolist()
            raise FloatingPointError(
                f"loss became infinite or NaN at iteration {self.iter} on rank(s) {ranks}; training stopped "
                f"before the update, the last checkpoint is kept. Losses on rank {comm.get_rank()}: {loss_values}"
            )
        return loss_values

    def _write_step_metrics(self, loss_values: dict[str, float], data_time: float, grad_norm: float | None) -> None:
        metrics = dict(loss_values)
        metrics["data_time"] = data_time
        all_metrics = comm.gather(metrics)
        if not comm.is_main_process():
            return
        storage = get_event_storage()
        storage.put_scalar("data_time", max(m.pop("data_time") for m in all_metrics))
        averaged = {key: float(np.mean([m[key] for m in all_metrics])) for key in all_metrics[0]}
        storage.put_scalar("total_loss", sum(averaged.values()))
        storage.put_scalars(**averaged, **dataset_loss_sums(averaged))
        if grad_norm is not None:
            storage.put_scalar("grad_norm", grad_norm)
        if self.grad_scaler.is_enabled():
            storage.put_scalar("[metric]grad_scale", self.grad_scaler.get_scale(), smoothing_hint=False)

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["grad_scaler"] = self.grad_scaler.state_dict()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        if self.grad_scaler.is_enabled():
            self.grad_scaler.load_state_dict(state_dict["grad_scaler"])
