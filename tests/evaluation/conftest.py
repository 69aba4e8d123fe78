"""A small synthetic generation for the evaluation tests, registered under the prefix `esyn`, and the tiny config."""

from pathlib import Path

import pytest

from openseed.config import setup_cfg
from openseed.data.registration.synthetic import register_synthetic_datasets
from openseed.data.synthetic import generate_synthetic_datasets

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_CONFIG = str(REPO_ROOT / "configs" / "tiny" / "tiny_decoupled.yaml")
NUM_VAL = 3


@pytest.fixture(scope="session")
def esyn(tmp_path_factory) -> dict:
    """{"root": generation folder, "names": registered `esyn_*` names}; 3 val images per set."""
    root = str(tmp_path_factory.mktemp("eval_synthetic") / "synthetic")
    generate_synthetic_datasets(root, seed=0, num_train=1, num_val=NUM_VAL)
    return {"root": root, "names": register_synthetic_datasets(root, prefix="esyn")}


@pytest.fixture(scope="session")
def tiny_cfg():
    return setup_cfg(TINY_CONFIG, ["DATALOADER.NUM_WORKERS", "0"])
