"""The forgetting report of a fine-tuning: what the target set gained, what the open vocabulary lost.

A report compares the model before fine-tuning with one or more fine-tuned runs (`FinetuneRun`: a fine-tuning
OUTPUT_DIR, either a full checkpoint `model_final.pth` or an adapter `adapter_final.safetensors` applied on the
model before) on
- the target task(s): the fine-tuning's own validation set(s);
- a held-out open-vocabulary suite: class names the fine-tuning never trained on (for the synthetic sets, the
  demo's zero-shot classes) and the pre-training tasks.
Each task is one metric of one dataset (`ReportTask`); the table has one row per task: the value before, and per
run its value and the change. Headline numbers per run: target gain (after − before, mean over the target tasks) and
open-vocabulary loss (before − after on the zero-shot tasks; positive = forgotten). Metrics are on the 0–100 scale.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

from openseed.checkpoint import ADAPTER_FILENAME

FINAL_CHECKPOINT = "model_final.pth"


@dataclass(frozen=True)
class ReportTask:
    """`results[dataset][group][metric]`; role "target", "open-vocabulary" (names never trained on) or
    "pre-training" (the pre-training task, names seen before the fine-tuning)."""

    role: str
    dataset: str
    group: str
    metric: str
    label: str


@dataclass(frozen=True)
class FinetuneRun:
    """A fine-tuning output folder: its name in the report, weights, adapter file (or ""), and training facts."""

    name: str
    output_dir: str
    weights: str
    adapter: str

    @classmethod
    def from_output_dir(cls, name: str, output_dir: str, before_weights: str) -> FinetuneRun:
        adapter = os.path.join(output_dir, ADAPTER_FILENAME)
        if os.path.isfile(adapter):
            return cls(name, output_dir, before_weights, adapter)
        weights = os.path.join(output_dir, FINAL_CHECKPOINT)
        if not os.path.isfile(weights):
            raise FileNotFoundError(f"run {name!r}: {output_dir} holds neither {ADAPTER_FILENAME} nor "
                                    f"{FINAL_CHECKPOINT} (did the fine-tuning finish?)")
        return cls(name, output_dir, weights, "")


def training_facts(run: FinetuneRun) -> dict:
    """Trainable parameters, training time and the size of what must be kept, read from the run's log.txt."""
    facts: dict = {"weights_bytes": os.path.getsize(run.adapter or run.weights)}
    log_path = os.path.join(run.output_dir, "log.txt")
    if not os.path.isfile(log_path):
        return facts
    with open(log_path, encoding="utf-8") as f:
        log = f.read()
    mode = re.search(r"fine-tuning mode '([\w-]+)': ([\d,]+) of ([\d,]+) parameters train", log)
    if mode:
        facts.update(mode=mode.group(1), trainable=int(mode.group(2).replace(",", "")),
                     total=int(mode.group(3).replace(",", "")))
    duration = re.findall(r"Total training time: (\d+):(\d\d):(\d\d)", log)
    if duration:
        hours, minutes, seconds = (int(v) for v in duration[-1])
        facts["train_seconds"] = 3600 * hours + 60 * minutes + seconds
    return facts


def task_value(results: dict, task: ReportTask) -> float | None:
    value = results.get(task.dataset, {}).get(task.group, {}).get(task.metric)
    return None if value is None else float(value)


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def build_report(tasks: list[ReportTask], before: dict, runs: dict[str, dict], facts: dict[str, dict]) -> dict:
    """The report as a dict: rows (task, before, per run after/delta) and per-run headline numbers."""
    rows = []
    for task in tasks:
        base = task_value(before, task)
        row = {"role": task.role, "task": task.label, "dataset": task.dataset, "before": base, "runs": {}}
        for name, results in runs.items():
            after = task_value(results, task)
            delta = None if after is None or base is None else after - base
            row["runs"][name] = {"after": after, "delta": delta}
        rows.append(row)
    headline = {}
    for name in runs:
        target = [r["runs"][name]["delta"] for r in rows if r["role"] == "target"]
        open_vocabulary = [r["runs"][name]["delta"] for r in rows if r["role"] == "open-vocabulary"]
        pretraining = [r["runs"][name]["delta"] for r in rows if r["role"] == "pre-training"]
        loss = _mean(open_vocabulary)
        forgotten = _mean(pretraining)
        headline[name] = {"target_gain": _mean(target), "open_vocabulary_loss": None if loss is None else -loss,
                          "pretraining_loss": None if forgotten is None else -forgotten, **facts.get(name, {})}
    return {"rows": rows, "runs": headline}


def _number(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.1f}" if signed else f"{value:.1f}"


def report_markdown(report: dict) -> str:
    """One table: a row per task (before, and per run after and change), then the per-run headline rows."""
    names = list(report["runs"])
    header = ["role", "task", "before"] + [f"{name} (Δ)" for name in names]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in report["rows"]:
        cells = [row["role"], row["task"], _number(row["before"])]
        cells += [f"{_number(row['runs'][n]['after'])} ({_number(row['runs'][n]['delta'], True)})" for n in names]
        lines.append("| " + " | ".join(cells) + " |")
    headline_rows = (
        ("target gain (mean Δ of the target tasks)", lambda h: _number(h.get("target_gain"), True)),
        ("open-vocabulary loss (points lost, zero-shot names)", lambda h: _number(h.get("open_vocabulary_loss"), True)),
        ("pre-training tasks loss (mean points lost)", lambda h: _number(h.get("pretraining_loss"), True)),
        ("trainable parameters", lambda h: f"{100 * h['trainable'] / h['total']:.2f} %" if "total" in h else "–"),
        ("file to keep (MB)", lambda h: f"{h['weights_bytes'] / 1e6:.2f}" if "weights_bytes" in h else "–"),
        ("training time (s)", lambda h: str(h.get("train_seconds", "–"))),
    )
    for label, cell in headline_rows:
        lines.append("| summary | " + label + " | | " + " | ".join(cell(report["runs"][n]) for n in names) + " |")
    return "\n".join(lines)


def write_report(report: dict, output_dir: str) -> str:
    """Write `report.json` and `report.md` under `output_dir`; returns the markdown."""
    os.makedirs(output_dir, exist_ok=True)
    markdown = report_markdown(report)
    with open(os.path.join(output_dir, "report.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(output_dir, "report.md"), "w", encoding="utf-8") as f:
        f.write(markdown + "\n")
    return markdown
