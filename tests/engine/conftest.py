"""Fixtures for the command-line training tests: a small synthetic dataset root and a train_net runner."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from openseed.data.synthetic import generate_synthetic_datasets
from tests.tool_loader import repo_pythonpath, script_path

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAIN_NET = script_path("tools/train_net.py")
TINY_CONFIG = str(REPO_ROOT / "configs" / "tiny" / "tiny_decoupled.yaml")
# The tiny model at 64² crops, one image per dataset and few sampled points: well under a second per iteration.
FAST_TINY = [
    "INPUT.IMAGE_SIZE", "64",
    "DATALOADER.TRAIN_IMS_PER_GPU", "(1, 1)",
    "MODEL.DECODER.TRAIN_NUM_POINTS", "256",
    "SEED", "5",
]


@pytest.fixture(scope="session")
def synthetic_datasets_root(tmp_path_factory) -> str:
    """A `$DETECTRON2_DATASETS` folder holding a small synthetic generation under `synthetic/`."""
    root = tmp_path_factory.mktemp("engine_datasets")
    generate_synthetic_datasets(str(root / "synthetic"), seed=0, num_train=8, num_val=3)
    return str(root)


def train_net_env(datasets_root: str) -> dict:
    """Environment of a train_net subprocess: offline, the synthetic datasets, one intra-op thread per process (the
    test machine's cores are shared; oversubscribed threads make every op many times slower)."""
    env = dict(os.environ)
    env.update(
        DETECTRON2_DATASETS=datasets_root,
        OMP_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        WANDB_MODE="offline",
        PYTHONPATH=repo_pythonpath(),
    )
    return env


def run_train_net(args: list[str], datasets_root: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `tools/train_net.py args` to completion; returns the finished process (stdout+stderr in `.stdout`)."""
    return subprocess.run(
        [sys.executable, str(TRAIN_NET), *args],
        cwd=REPO_ROOT,
        env=train_net_env(datasets_root),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )
