"""A tiny synthetic-dataset generation shared by the data tests (registered under the prefix `tsyn`)."""

import pytest

from openseed.data.registration.synthetic import register_synthetic_datasets
from openseed.data.synthetic import generate_synthetic_datasets

TINY_TRAIN, TINY_VAL = 6, 3


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory) -> str:
    """Root of a tiny synthetic generation (6 train / 3 val images per set), registered as `tsyn_*`."""
    root = str(tmp_path_factory.mktemp("synthetic") / "synthetic")
    generate_synthetic_datasets(root, seed=0, num_train=TINY_TRAIN, num_val=TINY_VAL)
    register_synthetic_datasets(root, prefix="tsyn")
    return root
