"""Event writers: a console printer that shows the total and per-dataset losses (a joint model logs 150+ loss
terms; all of them still go to metrics.json and TensorBoard) and a Weights & Biases writer.

All writers report the median over their window (= the logging period), like Detectron2's, so with a logging
period of 1 metrics.json holds the exact per-iteration values.
"""

from __future__ import annotations

import os

import torch
import yaml
from detectron2.utils.events import CommonMetricPrinter, EventWriter, JSONWriter, TensorboardXWriter, get_event_storage


class CompactMetricPrinter(CommonMetricPrinter):
    """`CommonMetricPrinter` (ETA, iteration, times, lr, memory) printing only `total_loss`, the
    `{dataset}.total_loss` sums and `grad_norm` instead of every loss term."""

    def __init__(self, max_iter: int, window_size: int, device: torch.device):
        super().__init__(max_iter, window_size)
        self.device = device

    def _median(self, storage, key: str) -> float:
        return storage.history(key).median(storage.count_samples(key, self._window_size))

    def write(self) -> None:
        storage = get_event_storage()
        if storage.iter == self._max_iter:
            return
        histories = storage.histories()
        dataset_sums = sorted(k for k in histories if k.endswith(".total_loss"))
        shown = [k for k in ("total_loss", *dataset_sums, "grad_norm") if k in histories]
        values = "  ".join(f"{k}: {self._median(storage, k):.4g}" for k in shown)
        times = "  ".join(
            f"{k}: {histories[k].global_avg() if k == 'time' else self._median(storage, k):.4f}"
            for k in ("time", "data_time")
            if k in histories
        )
        lr = f"{histories['lr'].latest():.5g}" if "lr" in histories else "N/A"
        eta = self._get_eta(storage)
        memory = ""
        if self.device.type == "cuda":
            memory = f"  max_mem: {torch.cuda.max_memory_allocated(self.device) / 2**20:.0f}M"
        self.logger.info(f" {f'eta: {eta}  ' if eta else ''}iter: {storage.iter}  {values}  {times}  lr: {lr}{memory}")


class WandbWriter(EventWriter):
    """Log the scalars of the event storage to Weights & Biases (`WANDB.*`; `WANDB.MODE: offline` needs no
    account: the run is stored under `OUTPUT_DIR/wandb` and can be synced later with `wandb sync`)."""

    def __init__(self, *, project: str, name: str, mode: str, output_dir: str, config: dict, window_size: int,
                 group: str = ""):
        try:
            import wandb
        except ImportError as error:
            raise ImportError("WANDB.ENABLED is True but the `wandb` package is not installed: install the extra "
                              "(pip install -e '.[wandb]') or set WANDB.ENABLED False") from error

        os.makedirs(output_dir, exist_ok=True)
        self._run = wandb.init(
            project=project, name=name or None, group=group or None, mode=mode, dir=output_dir, config=config,
            reinit="create_new",
        )
        self._window_size = window_size
        self._last_write = -1

    @classmethod
    def from_config(cls, cfg, window_size: int) -> WandbWriter:
        return cls(
            project=cfg.WANDB.PROJECT,
            name=cfg.WANDB.NAME,
            group=cfg.WANDB.GROUP,
            mode=cfg.WANDB.MODE,
            output_dir=cfg.OUTPUT_DIR,
            config=yaml.safe_load(cfg.dump()),
            window_size=window_size,
        )

    @property
    def run(self):
        """The `wandb` run."""
        return self._run

    def write(self) -> None:
        storage = get_event_storage()
        by_iteration: dict[int, dict[str, float]] = {}
        for key, (value, iteration) in storage.latest_with_smoothing_hint(self._window_size).items():
            if iteration > self._last_write:
                by_iteration.setdefault(iteration, {})[key] = value
        for iteration in sorted(by_iteration):
            self._run.log(by_iteration[iteration], step=iteration, commit=True)
        if by_iteration:
            self._last_write = max(by_iteration)

    def close(self) -> None:
        self._run.finish()


def build_writers(cfg, max_iter: int, log_period: int) -> list[EventWriter]:
    """Console (with ETA), `OUTPUT_DIR/metrics.json`, TensorBoard, and W&B when `WANDB.ENABLED`."""
    device = torch.device(cfg.MODEL.DEVICE)
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    writers = [
        CompactMetricPrinter(max_iter, log_period, device),
        JSONWriter(os.path.join(cfg.OUTPUT_DIR, "metrics.json"), window_size=log_period),
        TensorboardXWriter(cfg.OUTPUT_DIR, window_size=log_period),
    ]
    if cfg.WANDB.ENABLED:
        writers.append(WandbWriter.from_config(cfg, log_period))
    return writers
