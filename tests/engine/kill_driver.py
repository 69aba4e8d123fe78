"""Run `tools/train_net.py` (its real command line) and SIGKILL the process right after iteration `$KILL_AFTER_ITER`.

Usage: python tests/engine/kill_driver.py <train_net arguments>. Nothing is flushed or cleaned up: the kill is as
abrupt as a lost machine. Used by the exact-resume test.
"""

import os
import signal
import sys

from detectron2.engine import HookBase

from openseed.engine import OpenSeeDTrainer
from tests.tool_loader import run_tool_as_main, script_path


class KillAfter(HookBase):
    def __init__(self, iteration: int):
        self.iteration = iteration

    def after_step(self):
        if self.trainer.iter == self.iteration:
            os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    build_hooks = OpenSeeDTrainer.build_hooks
    kill_after = int(os.environ["KILL_AFTER_ITER"])
    OpenSeeDTrainer.build_hooks = lambda self: [*build_hooks(self), KillAfter(kill_after)]
    sys.argv = [str(script_path("tools/train_net.py")), *sys.argv[1:]]
    run_tool_as_main("train_net")


if __name__ == "__main__":
    main()
