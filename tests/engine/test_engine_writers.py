"""Console printer (total and per-dataset losses with ETA) and the offline Weights & Biases writer."""

import logging
import sys

import pytest
import torch
from detectron2.utils.events import EventStorage

from openseed.config import get_cfg
from openseed.engine.writers import CompactMetricPrinter, WandbWriter, build_writers


def _fill(storage, iterations):
    for iteration in range(iterations):
        storage.iter = iteration
        storage.put_scalars(**{"coco.loss_a": 1.0 + iteration, "coco.total_loss": 1.0 + iteration, "total_loss": 2.0})
        storage.put_scalar("time", 0.5)
        storage.put_scalar("lr", 1e-4, smoothing_hint=False)


def test_console_shows_eta_and_loss_sums_not_every_term(caplog):
    printer = CompactMetricPrinter(max_iter=100, window_size=4, device=torch.device("cpu"))
    with EventStorage(0) as storage, caplog.at_level(logging.INFO, logger="detectron2.utils.events"):
        _fill(storage, 4)
        printer.write()
    line = caplog.records[-1].getMessage()
    assert "eta: 0:00:48" in line  # 0.5 s/iter x 96 remaining iterations
    assert "iter: 3  total_loss: 2  coco.total_loss: 2.5  time: 0.5000" in line  # median over the 4-iteration window
    assert "coco.loss_a" not in line and "lr: 0.0001" in line


def test_wandb_offline_writer_logs_scalars(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(tmp_path)
    cfg.WANDB.ENABLED = True
    writers = build_writers(cfg, max_iter=10, log_period=1)
    wandb_writer = writers[-1]
    assert isinstance(wandb_writer, WandbWriter)
    with EventStorage(0) as storage:
        _fill(storage, 3)
        wandb_writer.write()
        summary = dict(wandb_writer.run.summary)
        assert summary["coco.loss_a"] == pytest.approx(3.0) and summary["_step"] == 2
        assert wandb_writer.run.config["SOLVER"]["BASE_LR"] == cfg.SOLVER.BASE_LR
    for writer in writers:
        writer.close()
    assert list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))


def test_wandb_writer_without_the_package_names_the_extra_and_the_key(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # what an installation without the `wandb` extra looks like
    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(tmp_path)
    cfg.WANDB.ENABLED = True
    with pytest.raises(ImportError, match=r"WANDB.ENABLED.*\[wandb\]"):
        build_writers(cfg, max_iter=10, log_period=1)


def test_wandb_runs_of_a_sweep_share_a_group(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(tmp_path)
    cfg.WANDB.ENABLED = True
    cfg.WANDB.GROUP = "mask_assist"
    cfg.WANDB.NAME = "with_assist/seed0"
    writers = build_writers(cfg, max_iter=10, log_period=1)
    try:
        assert writers[-1].run.group == "mask_assist" and writers[-1].run.name == "with_assist/seed0"
    finally:
        for writer in writers:
            writer.close()
