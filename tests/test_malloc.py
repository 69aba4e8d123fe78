"""`openseed.utils.malloc`: freed large tensors stay in the heap for reuse until `release_free_heap`; opt-out and bad
values."""

import os
import platform
import subprocess
import sys

import pytest

from openseed.utils.malloc import tune_malloc

# In a fresh process: allocate and touch a 256 MiB tensor, free it, print the RSS (MiB) with it and after freeing.
PROBE = """
import torch
from openseed.utils.malloc import release_free_heap, tune_malloc
def rss_mb():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 2**20
tuned = tune_malloc()
block = torch.ones(256 * 2**20 // 4)
with_block = rss_mb()
del block
after_free = rss_mb()
release_free_heap()
print(tuned, with_block, after_free, rss_mb())
"""


def probe(choice: str) -> tuple[bool, float, float]:
    """(tuned, MiB returned by freeing the block, MiB returned by freeing it and then `release_free_heap`)."""
    env = dict(os.environ, OPENSEED_MALLOC=choice)
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    tuned, with_block, after_free, after_release = out.stdout.split()
    return tuned == "True", float(with_block) - float(after_free), float(with_block) - float(after_release)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc" or not os.path.exists("/proc/self/statm"),
                    reason="the settings are glibc's; RSS is read from Linux /proc")
def test_tuned_process_keeps_freed_tensor_memory_and_default_returns_it():
    tuned, released, after_release = probe("tuned")
    assert tuned and released < 16  # kept in the heap for the next allocation
    assert after_release > 240  # until handed back on request
    tuned, released, _ = probe("glibc")
    assert not tuned and released > 240  # glibc's default: the block was mmap'ed and is unmapped when freed


def test_opt_out_and_bad_value(monkeypatch):
    monkeypatch.setenv("OPENSEED_MALLOC", "glibc")
    assert tune_malloc() is False
    monkeypatch.setenv("OPENSEED_MALLOC", "jemalloc")
    with pytest.raises(ValueError, match="OPENSEED_MALLOC='jemalloc'"):
        tune_malloc()
