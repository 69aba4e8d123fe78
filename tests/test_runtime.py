"""`openseed.utils.runtime`: the start-up settings flush denormal floats in the main thread and in the worker threads
started after them (checked in fresh processes: the setting is process-wide), and `OPENSEED_DENORMALS` opts out."""

import os
import subprocess
import sys
import warnings

import pytest

from openseed.utils.runtime import DENORMALS_VARIABLE, flush_denormals

CHILD = """
import torch
from openseed.utils.runtime import tune_cpu_runtime
settings = tune_cpu_runtime()
torch.set_num_threads(2)
small = torch.full((1 << 16,), 1e-39)  # float32 denormal; large enough to be split between the two threads
kept = (small * 1.0).ne(0)
print(settings["denormals_flushed"], int(kept[: 1 << 15].sum()), int(kept[1 << 15 :].sum()))
"""


def _child(environment: dict) -> list[str]:
    env = {**os.environ, **environment, "PYTHONPATH": os.getcwd()}
    result = subprocess.run([sys.executable, "-W", "error::UserWarning", "-c", CHILD], env=env, capture_output=True,
                            text=True, timeout=120, check=True)
    return result.stdout.split()


def test_denormals_are_flushed_in_every_thread_and_kept_on_request():
    flushed, first_half, second_half = _child({})
    if flushed == "False":
        pytest.skip("this CPU has no flush-to-zero mode")
    assert (first_half, second_half) == ("0", "0")  # both halves of the work: the main and the worker thread
    assert _child({DENORMALS_VARIABLE: "keep"}) == ["False", str(1 << 15), str(1 << 15)]


def test_a_bad_setting_is_an_error_naming_the_variable(monkeypatch):
    monkeypatch.setenv(DENORMALS_VARIABLE, "sometimes")
    with pytest.raises(ValueError, match="OPENSEED_DENORMALS='sometimes'"), warnings.catch_warnings():
        flush_denormals()
