"""A small stand-in model and joint loader with the engine's contracts, for engine tests that need no real model.

The model returns `{f"{dataset}.loss_fit": ..., f"{dataset}.loss_aux": ...}` for a joint batch and draws from the
torch, NumPy and Python generators in every forward, so that a resumed run matches only if all of them are
restored. The loader yields batch i from a generator seeded with (seed, i): it can start at any batch; like a
`DataLoader`, it draws from the global torch RNG when it starts (on the first `next`).
"""

from __future__ import annotations

import random

import numpy as np
import torch
from detectron2.data import DatasetCatalog
from torch import nn

from openseed.config import get_cfg
from openseed.engine import OpenSeeDTrainer

DATASETS = ("engine_standin_a", "engine_standin_b")


def register_standin_datasets() -> None:
    for name in DATASETS:
        if name not in DatasetCatalog.list():
            DatasetCatalog.register(name, list)


class StandInModel(nn.Module):
    """Regresses a fixed linear target; `nan_at_call` makes the forward of that call return NaN losses."""

    def __init__(self, nan_at_call: int | None = None):
        super().__init__()
        self.backbone = nn.Linear(4, 8)
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 1)
        self.nan_at_call = nan_at_call
        self.calls = 0

    def forward(self, batch: dict[str, list[dict]]) -> dict[str, torch.Tensor]:
        self.calls += 1
        losses = {}
        for name, items in batch.items():
            x = torch.stack([item["x"] for item in items])
            target = torch.stack([item["y"] for item in items])
            noisy = x + 0.05 * torch.randn_like(x)
            jitter = 1.0 + 0.01 * float(np.random.rand()) + 0.01 * random.random()
            prediction = self.head(self.norm(torch.relu(self.backbone(noisy)))).squeeze(-1)
            losses[f"{name}.loss_fit"] = ((prediction - target) ** 2).mean() * jitter
            losses[f"{name}.loss_aux"] = 0.01 * self.head.weight.pow(2).sum()
        if self.calls == self.nan_at_call:
            losses = {k: v * float("nan") for k, v in losses.items()}
        return losses


class StandInJointLoader:
    """Infinite joint batches `{dataset: [{"x": 4-vector, "y": scalar}] * 2}`; batch i depends only on (seed, i)."""

    def __init__(self, start_iter: int = 0, seed: int = 7):
        self.start_iter = start_iter
        self.seed = seed

    def __iter__(self):
        torch.empty((), dtype=torch.int64).random_()  # like a DataLoader drawing its base seed when it starts
        index = self.start_iter
        weights = torch.tensor([1.0, -2.0, 0.5, 3.0])
        while True:
            generator = torch.Generator().manual_seed(self.seed * 100003 + index)
            batch = {}
            for name in DATASETS:
                xs = torch.randn(2, 4, generator=generator)
                batch[name] = [{"x": x, "y": (x * weights).sum()} for x in xs]
            yield batch
            index += 1


class StandInTrainer(OpenSeeDTrainer):
    """`OpenSeeDTrainer` with the stand-ins; `model_factory` builds the model."""

    model_factory = StandInModel

    @classmethod
    def build_model(cls, cfg):
        return cls.model_factory().to(cfg.MODEL.DEVICE)

    @classmethod
    def build_train_loader(cls, cfg, start_iter):
        return StandInJointLoader(start_iter)


def standin_config(output_dir: str, max_iter: int, checkpoint_period: int, **overrides):
    """A frozen config for the stand-ins: CPU, AdamW, every iteration logged (exact values in metrics.json)."""
    register_standin_datasets()
    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(output_dir)
    cfg.MODEL.DEVICE = "cpu"
    cfg.DATASETS.TRAIN = DATASETS
    cfg.DATASETS.TEST = ()
    cfg.SOLVER.BASE_LR = 0.02
    cfg.SOLVER.MAX_ITER = max_iter
    cfg.SOLVER.STEPS = (max_iter // 2,)
    cfg.SOLVER.WARMUP_ITERS = 2
    cfg.SOLVER.WARMUP_FACTOR = 0.5
    cfg.SOLVER.CHECKPOINT_PERIOD = checkpoint_period
    cfg.SOLVER.LOG_PERIOD = 1
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 1.0
    for key, value in overrides.items():
        node = cfg
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    cfg.freeze()
    return cfg
