"""Run `tools/train_net.py` (its real command line) and SIGKILL the process half way through writing a checkpoint.

Usage: KILL_DURING_SAVE=model_0000005 python tests/reliability/train_driver.py <train_net arguments>.
The checkpoint's temporary file gets half of its bytes, flushed to disk, then the process is killed as abruptly as a
lost machine: the test checks that the previous checkpoint is the one resumed from.
"""

import io
import os
import signal
import sys
from pathlib import Path

import torch

from openseed.checkpoint import io as checkpoint_io
from openseed.engine import checkpointer
from tests.tool_loader import run_tool_as_main, script_path


def save_and_die_half_way(obj, path) -> None:
    if Path(path).stem != os.environ["KILL_DURING_SAVE"]:
        checkpoint_io.save_checkpoint(obj, path)
        return
    payload = io.BytesIO()
    torch.save(obj, payload)

    def write_half_then_die(handle) -> None:
        handle.write(payload.getvalue()[: len(payload.getvalue()) // 2])
        handle.flush()
        os.fsync(handle.fileno())
        os.kill(os.getpid(), signal.SIGKILL)

    checkpoint_io.atomic_write(path, write_half_then_die)


def main() -> None:
    checkpointer.save_checkpoint = save_and_die_half_way
    sys.argv = [str(script_path("tools/train_net.py")), *sys.argv[1:]]
    run_tool_as_main("train_net")


if __name__ == "__main__":
    main()
