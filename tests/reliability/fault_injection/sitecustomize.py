"""Fault injection for the multi-process tests, imported by every Python process whose `PYTHONPATH` starts with this
folder (launcher, spawned ranks, `srun` tasks): with `OPENSEED_FAIL_RANK=R` and `OPENSEED_FAIL_ITERATION=N` set, the
training step of rank R raises `RuntimeError` at iteration N, as a bug or a bad batch on one process would."""

import os

if "OPENSEED_FAIL_RANK" in os.environ:
    from detectron2.utils import comm

    from openseed.engine.step import JointStepTrainer

    _run_step = JointStepTrainer.run_step

    def _failing_run_step(self) -> None:
        if comm.get_rank() == int(os.environ["OPENSEED_FAIL_RANK"]) and self.iter == int(
                os.environ["OPENSEED_FAIL_ITERATION"]):
            raise RuntimeError(f"injected fault on rank {comm.get_rank()} at iteration {self.iter}")
        _run_step(self)

    JointStepTrainer.run_step = _failing_run_step
