"""Fixtures of the reliability tests: the synthetic dataset root of the engine tests and uninterrupted reference
runs of the shipped configs."""

import pytest

from tests.engine.conftest import synthetic_datasets_root  # noqa: F401  (re-exported fixture)
from tests.reliability.training_runs import final_state, finish, launcher_args, short_run_args, start


@pytest.fixture(scope="session")
def uninterrupted(tmp_path_factory, synthetic_datasets_root):  # noqa: F811  (the fixture above)
    """`reference(config, processes)`: the final state of an uninterrupted run (0 workers), computed once."""
    states = {}

    def reference(config, processes):
        key = (config.stem, processes)
        if key not in states:
            out = tmp_path_factory.mktemp(f"full_{config.stem}_{processes}")
            process = start([*launcher_args(processes), *short_run_args(config, out)], synthetic_datasets_root,
                            out / "stdout.txt")
            output = finish(process)
            assert process.returncode == 0, output[-5000:]
            states[key] = final_state(out)
        return states[key]

    return reference
