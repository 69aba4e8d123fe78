"""The report of an ablation sweep (tools/ablate.py): per-run metrics files, `table.md` and `plot.png`.

A sweep folder holds one `metrics.json` per run (`<arm>/seed<k>/metrics.json`):

    {"experiment": str, "arm": str, "seed": int, "metrics": {name: value or null}, "train_seconds": float, ...}

`summarize` pairs the runs of the first two arms by seed; `write_report(sweep_dir, arms, metric_names)` writes
`table.md` (mean ± sample std per arm, the mean paired difference second − first arm ± its std, and the paired sign:
on how many seeds the second arm is higher) and `plot.png` (bars of the means with std error bars, one dot per seed).
`TableCallback` runs it at the end of a hydra multirun; `python -m openseed.ablation.report DIR` reruns it on the
runs found in DIR (e.g. of an interrupted sweep).
"""

from __future__ import annotations

import glob
import json
import math
import os
from dataclasses import dataclass

import numpy as np

METRICS_FILE = "metrics.json"
TABLE_FILE = "table.md"
PLOT_FILE = "plot.png"


def read_runs(sweep_dir: str) -> list[dict]:
    """Every run's metrics object (`sweep_dir/<arm>/seed<k>/metrics.json`), sorted by arm and seed."""
    runs = []
    for path in sorted(glob.glob(os.path.join(sweep_dir, "*", "*", METRICS_FILE))):
        with open(path, encoding="utf-8") as f:
            run = json.load(f)
        missing = {"experiment", "arm", "seed", "metrics", "arms", "metric_names"} - set(run)
        if missing:
            raise ValueError(f"{path} is not a run's metrics file of tools/ablate.py: it lacks {sorted(missing)}")
        runs.append(run)
    return sorted(runs, key=lambda r: (r["arm"], r["seed"]))


@dataclass(frozen=True)
class MetricSummary:
    """One metric of a sweep: per-arm values by seed, and the paired comparison of the second arm to the first."""

    name: str
    values: dict[str, dict[int, float]]  # arm -> seed -> value

    def mean_std(self, arm: str) -> tuple[float, float, int]:
        """(mean, sample std (0 for one run), number of runs) of an arm; NaN mean when it has no run."""
        values = np.array(list(self.values.get(arm, {}).values()), dtype=np.float64)
        if values.size == 0:
            return math.nan, math.nan, 0
        return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else 0.0, int(values.size)

    def paired(self, first: str, second: str) -> tuple[list[float], int]:
        """(differences second − first over the seeds both arms have, sorted by seed; seeds where second > first)."""
        a, b = self.values.get(first, {}), self.values.get(second, {})
        diffs = [b[s] - a[s] for s in sorted(set(a) & set(b))]
        return diffs, sum(d > 0 for d in diffs)


def summarize(runs: list[dict], metric_names: list[str]) -> list[MetricSummary]:
    """One `MetricSummary` per metric name; runs where a metric is null (no number) are left out of it."""
    summaries = []
    for name in metric_names:
        values: dict[str, dict[int, float]] = {}
        for run in runs:
            value = run["metrics"].get(name)
            if value is not None:
                values.setdefault(run["arm"], {})[int(run["seed"])] = float(value)
        summaries.append(MetricSummary(name, values))
    return summaries


def _cell(mean: float, std: float, n: int) -> str:
    return "n/a" if n == 0 else f"{mean:.2f} ± {std:.2f}"


def table_markdown(experiment: str, arms: list[str], summaries: list[MetricSummary]) -> str:
    """The markdown table of a sweep: one row per metric, one column per arm, then the paired comparison."""
    if len(arms) != 2:
        raise ValueError(f"an ablation compares two arms; experiment {experiment!r} has {arms}")
    first, second = arms
    header = ["metric", *(f"{arm} (mean ± std, n)" for arm in arms), f"{second} − {first} (paired)",
              f"seeds {second} > {first}"]
    lines = [f"### {experiment}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for summary in summaries:
        cells = []
        for arm in arms:
            mean, std, n = summary.mean_std(arm)
            cells.append(f"{_cell(mean, std, n)} (n={n})")
        diffs, wins = summary.paired(first, second)
        if diffs:
            diff = np.array(diffs)
            spread = float(diff.std(ddof=1)) if diff.size > 1 else 0.0
            cells += [f"{diff.mean():+.2f} ± {spread:.2f}", f"{wins}/{len(diffs)}"]
        else:
            cells += ["n/a", "0/0"]
        lines.append("| " + " | ".join([summary.name, *cells]) + " |")
    return "\n".join(lines) + "\n"


def plot_sweep(path: str, experiment: str, arms: list[str], summaries: list[MetricSummary]) -> None:
    """Grouped bars (one group per metric, one bar per arm) of the means with std error bars and per-seed dots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(summaries), 3.6))
    width = 0.8 / len(arms)
    for k, arm in enumerate(arms):
        xs = np.arange(len(summaries)) + (k - (len(arms) - 1) / 2) * width
        stats = [s.mean_std(arm) for s in summaries]
        ax.bar(xs, [m for m, _, _ in stats], width, yerr=[sd for _, sd, _ in stats], capsize=4, label=arm, alpha=0.8)
        for x, summary in zip(xs, summaries):
            seeds = list(summary.values.get(arm, {}).values())
            ax.scatter([x] * len(seeds), seeds, color="black", s=8, zorder=3)
    ax.set_xticks(np.arange(len(summaries)), [s.name for s in summaries], rotation=15)
    ax.set_ylabel("metric (0-100)")
    ax.set_title(experiment)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(sweep_dir: str, experiment: str, arms: list[str], metric_names: list[str]) -> tuple[str, str]:
    """Write `table.md` and `plot.png` of the runs under `sweep_dir`; returns their paths."""
    runs = [r for r in read_runs(sweep_dir) if r["arm"] in arms]
    if not runs:
        raise FileNotFoundError(f"{sweep_dir}: no run {METRICS_FILE} of the arms {arms}: nothing to report")
    summaries = summarize(runs, metric_names)
    table = os.path.join(sweep_dir, TABLE_FILE)
    with open(table, "w", encoding="utf-8") as f:
        f.write(table_markdown(experiment, arms, summaries))
    plot = os.path.join(sweep_dir, PLOT_FILE)
    plot_sweep(plot, experiment, arms, summaries)
    return table, plot
