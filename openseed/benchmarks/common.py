"""Shared machinery of `tools/benchmark.py eval|text|train`: isolated runs, peak memory, stage timers, tables.

Every benchmark case runs in a fresh spawned process (`run_isolated`), so that its peak resident set size (Linux
`VmHWM`, else `ru_maxrss`) is its own: model building, warm-up and the timed runs included. Times are wall-clock
seconds of `time.perf_counter`; CPU seconds (`time.process_time`, all threads of the process) are reported beside
them because the machine may be shared: on an idle machine wall ≈ CPU / threads, on a loaded one wall grows with the
load average. Single-threaded CPU seconds are the figure least sensitive to load; with several threads, OpenMP
workers spin while they wait for a descheduled sibling, so CPU seconds grow under load too. The load average is
recorded before and after the timed runs.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import statistics
import time
import traceback
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from unittest import mock

import torch
from torch import nn

from ..utils.malloc import OPT_OUT_VARIABLE
from ..utils.runtime import tune_cpu_runtime

PROC_STATUS = "/proc/self/status"
PROC_CLEAR_REFS = "/proc/self/clear_refs"
MALLOC_SETTINGS = ("tuned", "glibc")  # `OPENSEED_MALLOC` of the child: `openseed.utils.malloc.tune_malloc` or not


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (`VmHWM` of /proc/self/status, else `ru_maxrss`)."""
    if os.path.isfile(PROC_STATUS):
        with open(PROC_STATUS, encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def reset_peak_rss() -> bool:
    """Restart the peak-RSS count at the current RSS (Linux: "5" to /proc/self/clear_refs resets `VmHWM`).

    Lets a case measure the peak of its timed phase alone, after a set-up phase (e.g. embedding a vocabulary that a
    real evaluation reads from the disk cache). Returns False where the platform cannot reset it (the peak then
    includes the set-up).
    """
    if not os.path.exists(PROC_CLEAR_REFS):
        return False
    with open(PROC_CLEAR_REFS, "w", encoding="ascii") as clear_refs:
        clear_refs.write("5")
    return True


def load_average() -> float:
    """1-minute load average (0.0 where the platform has none)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


def _child_main(connection, target: Callable[..., dict], kwargs: dict, threads: int) -> None:
    try:
        runtime = tune_cpu_runtime()
        torch.set_num_threads(threads)
        result = target(**kwargs)
        result.update(peak_rss_mb=peak_rss_mb(), threads=torch.get_num_threads(), **runtime)
        if torch.cuda.is_initialized():
            result["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
        connection.send(("ok", result))
    except BaseException as error:  # noqa: BLE001 - reported to the parent with its traceback, then re-raised
        connection.send(("error", f"{type(error).__name__}: {error}\n{traceback.format_exc()}"))
        raise
    finally:
        connection.close()


@contextmanager
def _environment(variables: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name)
            else:
                os.environ[name] = value


def run_isolated(target: Callable[..., dict], kwargs: dict, *, threads: int, malloc: str = "tuned") -> dict:
    """Run `target(**kwargs)` (a module-level function returning a dict) in a fresh spawned process.

    The child applies `openseed.utils.runtime.tune_cpu_runtime` first, as the tools do: `malloc` "tuned" lets it tune
    malloc, "glibc" keeps glibc's defaults (`OPENSEED_MALLOC=glibc`); denormals are flushed unless
    `OPENSEED_DENORMALS=keep`. Returns its dict plus `peak_rss_mb` (the child's peak RSS), `cuda_peak_mb` (peak CUDA
    memory allocated, where the child used CUDA), `threads` (torch intra-op threads), `malloc`, `malloc_tuned` and
    `denormals_flushed` (whether the settings took effect).
    A child killed by a signal (e.g. the OOM killer) gives `{"error": "killed by signal N", "malloc"}`; a Python
    error in the child is raised here as `RuntimeError` with the child's traceback.
    """
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child_main, args=(sender, target, kwargs, threads))
    if malloc not in MALLOC_SETTINGS:
        raise ValueError(f"malloc setting {malloc!r}: expected one of {sorted(MALLOC_SETTINGS)}")
    with _environment({OPT_OUT_VARIABLE: malloc}):
        process.start()
    sender.close()
    message = None
    try:
        message = receiver.recv()
    except EOFError:
        pass
    process.join()
    if message is None:
        code = process.exitcode
        reason = f"killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
        return {"error": reason, "malloc": malloc}
    status, payload = message
    if status == "error":
        raise RuntimeError(f"benchmark child process failed:\n{payload}")
    return dict(payload, malloc=malloc)


class StageTimer:
    """Exclusive wall-clock and CPU time per named stage: while a nested stage runs, the enclosing one is paused.

    Stages are entered explicitly (`with timer.stage("backward")`), around a module's forward (`time_module`) or
    around a callable attribute (`time_attribute`, e.g. a module-level function the code under test looks up).
    `totals` holds wall seconds, `cpu_totals` CPU seconds of the whole process (all threads) per stage.
    """

    def __init__(self):
        self.totals: dict[str, float] = defaultdict(float)
        self.cpu_totals: dict[str, float] = defaultdict(float)
        self._stack: list[list] = []

    def _enter(self, name: str) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        if self._stack:
            top = self._stack[-1]
            self.totals[top[0]] += now - top[1]
            self.cpu_totals[top[0]] += cpu - top[2]
        self._stack.append([name, now, cpu])

    def _exit(self) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        name, start, cpu_start = self._stack.pop()
        self.totals[name] += now - start
        self.cpu_totals[name] += cpu - cpu_start
        if self._stack:
            self._stack[-1][1:] = [now, cpu]

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self._enter(name)
        try:
            yield
        finally:
            self._exit()

    @contextmanager
    def time_module(self, module: nn.Module, name: str) -> Iterator[None]:
        """Time every forward of `module` as stage `name` while the context is open."""
        handles = [module.register_forward_pre_hook(lambda *_: self._enter(name)),
                   module.register_forward_hook(lambda *_: self._exit())]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    @contextmanager
    def time_attribute(self, owner, attribute: str, name: str) -> Iterator[None]:
        """Time every call of `owner.attribute` (looked up at call time) as stage `name` while the context is open."""
        original = getattr(owner, attribute)

        def timed(*args, **kwargs):
            with self.stage(name):
                return original(*args, **kwargs)

        with mock.patch.object(owner, attribute, timed):
            yield

    @contextmanager
    def instrument(self, modules: dict[str, nn.Module], attributes: dict[str, tuple[object, str]]) -> Iterator[None]:
        """Open `time_module` for each {stage: module} and `time_attribute` for each {stage: (owner, attribute)}."""
        with ExitStack() as stack:
            for name, module in modules.items():
                stack.enter_context(self.time_module(module, name))
            for name, (owner, attribute) in attributes.items():
                stack.enter_context(self.time_attribute(owner, attribute, name))
            yield

    def reset(self) -> None:
        self.totals.clear()
        self.cpu_totals.clear()


def timed_runs(step: Callable[[], object], timer: StageTimer, *, runs: int, warmup: int) -> dict:
    """Call `step` `warmup` times untimed, then `runs` times timed.

    Returns `{"wall_s": [...], "cpu_s": [...], "stages": {stage: [...]}, "stage_cpu": {stage: [...]}, "load_before",
    "load_after"}`, one value per timed run; stage lists hold the run's exclusive stage time (0.0 where the stage did
    not run), plus "other" = the run's total minus the timed stages.
    """
    for _ in range(warmup):
        step()
    load_before = load_average()
    walls, cpus, wall_stages, cpu_stages = [], [], [], []
    for _ in range(runs):
        timer.reset()
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        step()
        if torch.cuda.is_initialized():
            torch.cuda.synchronize()
        walls.append(time.perf_counter() - wall_start)
        cpus.append(time.process_time() - cpu_start)
        wall_stages.append(dict(timer.totals))
        cpu_stages.append(dict(timer.cpu_totals))
    return {"wall_s": walls, "cpu_s": cpus, "stages": _per_stage(wall_stages, walls),
            "stage_cpu": _per_stage(cpu_stages, cpus), "load_before": load_before, "load_after": load_average()}


def _per_stage(per_run: list[dict[str, float]], totals: list[float]) -> dict[str, list[float]]:
    names = sorted({name for stages in per_run for name in stages})
    stages = {name: [s.get(name, 0.0) for s in per_run] for name in names}
    stages["other"] = [total - sum(s.values()) for total, s in zip(totals, per_run)]
    return stages


def median(values) -> float:
    return float(statistics.median(values)) if values else float("nan")


def stage_summary(stages: dict[str, list[float]], order: tuple[str, ...]) -> str:
    """"backbone 2.1 / pixel decoder 4.0 / …" with the median of each stage, in `order`, then any others."""
    names = [n for n in order if n in stages] + sorted(n for n in stages if n not in order)
    return " / ".join(f"{name} {median(stages[name]):.2f}" for name in names)
