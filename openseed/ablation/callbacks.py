"""Hydra callback of tools/ablate.py: writes the sweep's `table.md` and `plot.png` when a multirun ends."""

from __future__ import annotations

import logging

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from .report import write_report

logger = logging.getLogger(__name__)


class TableCallback(Callback):
    """`hydra.callbacks.table._target_: openseed.ablation.callbacks.TableCallback` in an experiment file."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        table, plot = write_report(config.hydra.sweep.dir, config.experiment, list(config.arms),
                                   list(config.metrics))
        logger.info(f"ablation {config.experiment}: {table}, {plot}")
