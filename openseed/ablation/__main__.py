"""`python -m openseed.ablation SWEEP_DIR`: (re)write `table.md` and `plot.png` from the runs found in SWEEP_DIR
(e.g. of a sweep that was interrupted); the arms and metrics are those the runs' metrics files name."""

from __future__ import annotations

import argparse

from .report import read_runs, write_report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("sweep_dir")
    args = parser.parse_args(argv)
    runs = read_runs(args.sweep_dir)
    if not runs:
        raise SystemExit(f"{args.sweep_dir}: no run metrics.json found")
    first = runs[0]
    table, plot = write_report(args.sweep_dir, first["experiment"], first["arms"], first["metric_names"])
    print(open(table, encoding="utf-8").read() + f"\n{plot}")


if __name__ == "__main__":
    main()
