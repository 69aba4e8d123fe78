"""Summary of evaluation results: one row per dataset, one column per headline metric, the paper's number beside ours
where docs/official_behaviours.md §13 gives one, and mean / median rows over the datasets of the ODinW and SegInW suites.

    summary = summarize(results, paper_model="T")   # results = evaluate(...) output
    print(markdown_table(summary))
    write_summary(results, output_dir, paper_model="T")  # output_dir/summary.json and summary.md
"""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import asdict, dataclass, field

from openseed.checkpoint.io import atomic_write
from openseed.data.registration.suites import suite_datasets

from .paper_numbers import paper_number, paper_suite_number


@dataclass(frozen=True)
class Column:
    """A summary column: metric `metric` of the evaluator result `group` (`panoptic_seg`, `segm`, `bbox`, `sem_seg`)."""

    title: str
    group: str
    metric: str


COLUMNS = (
    Column("PQ", "panoptic_seg", "PQ"),
    Column("mask AP", "segm", "AP"),
    Column("box AP", "bbox", "AP"),
    Column("mIoU", "sem_seg", "mIoU"),
)
# suites summarised by the mean and median over their datasets of one column (docs/official_behaviours.md §10.6, §13.3)
SUITE_AGGREGATES = {"odinw13": "box AP", "odinw35": "box AP", "seginw": "mask AP"}


@dataclass
class SummaryRow:
    """`values[column]`: ours (None: not measured or not computable); `paper[column]`: the paper's, where known."""

    name: str
    values: dict[str, float | None]
    paper: dict[str, float] = field(default_factory=dict)
    note: str = ""


def paper_model_for(cfg) -> str:
    """"L" for a Swin-L backbone (embedding dim 192), else "T" (Swin-T and the small test models)."""
    swin_large = cfg.MODEL.BACKBONE.NAME == "D2SwinTransformer" and cfg.MODEL.SWIN.EMBED_DIM == 192
    return "L" if swin_large else "T"


def dataset_row(name: str, results: dict, paper_model: str | None) -> SummaryRow:
    values = {}
    paper = {}
    for column in COLUMNS:
        group = results.get(column.group)
        if isinstance(group, dict) and column.metric in group:
            values[column.title] = group[column.metric]
        number = paper_number(name, column.title, paper_model)
        if number is not None:
            paper[column.title] = number
    return SummaryRow(name, values, paper)


def suite_rows(results: dict[str, dict], paper_model: str | None) -> list[SummaryRow]:
    """Mean and median rows for each aggregated suite with at least one evaluated dataset."""
    rows = []
    for suite, title in SUITE_AGGREGATES.items():
        members = suite_datasets(suite)
        column = next(c for c in COLUMNS if c.title == title)
        values = [results[n].get(column.group, {}).get(column.metric) for n in members if n in results]
        values = [v for v in values if v is not None]
        if not values:
            continue
        note = f"{len(values)} of {len(members)} datasets"
        for statistic, function in (("mean", statistics.mean), ("median", statistics.median)):
            paper = paper_suite_number(suite, statistic, paper_model)
            rows.append(SummaryRow(f"{suite} {statistic}", {title: float(function(values))},
                                   {title: paper} if paper is not None else {}, note))
    return rows


def summarize(results: dict[str, dict], paper_model: str | None = "T") -> dict:
    """JSON-ready summary: {"columns", "paper_model", "rows": [{"name", "values", "paper", "note"}]}."""
    rows = [dataset_row(name, metrics, paper_model) for name, metrics in results.items()]
    rows += suite_rows(results, paper_model)
    return {"columns": [c.title for c in COLUMNS], "paper_model": paper_model, "rows": [asdict(r) for r in rows]}


def _cell(value, paper) -> str:
    ours = "–" if value is None else f"{value:.1f}"
    return ours if paper is None else f"{ours} ({paper:.1f})"


def markdown_table(summary: dict) -> str:
    """Markdown table of a `summarize` result; the paper's numbers in parentheses."""
    columns = summary["columns"]
    lines = ["| dataset | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for row in summary["rows"]:
        cells = [_cell(row["values"].get(c), row["paper"].get(c)) for c in columns]
        name = f"{row['name']} ({row['note']})" if row["note"] else row["name"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if summary["paper_model"] and any(row["paper"] for row in summary["rows"]):
        lines.append("")
        lines.append(f"In parentheses: the paper's OpenSeeD ({summary['paper_model']}) (docs/official_behaviours.md §13; ODinW-35 from the "
                     "DINOv paper). – : not measured.")
    return "\n".join(lines)


def write_summary(results: dict[str, dict], output_dir: str, paper_model: str | None = "T") -> dict:
    """Write `output_dir/summary.json` and `summary.md` (atomically); returns the summary with its markdown."""
    summary = summarize(results, paper_model)
    summary["markdown"] = markdown_table(summary)
    os.makedirs(output_dir, exist_ok=True)
    encoded = json.dumps(summary, indent=2, allow_nan=False).encode("utf-8")
    atomic_write(os.path.join(output_dir, "summary.json"), lambda handle: handle.write(encoded))
    markdown = (summary["markdown"] + "\n").encode("utf-8")
    atomic_write(os.path.join(output_dir, "summary.md"), lambda handle: handle.write(markdown))
    return summary
