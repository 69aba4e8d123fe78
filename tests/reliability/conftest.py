"""Fixtures of the reliability tests: the synthetic dataset root of the engine tests and train_net runners."""

from tests.engine.conftest import synthetic_datasets_root  # noqa: F401  (re-exported fixture)
