"""Forgetting report: per-task rows, target gain / open-vocabulary loss per run, run folders and training facts."""

import json

import pytest

from openseed.evaluation.forgetting import (
    FinetuneRun,
    ReportTask,
    build_report,
    report_markdown,
    training_facts,
    write_report,
)

TASKS = [
    ReportTask("target", "custom_val", "segm", "AP", "custom: mask AP"),
    ReportTask("target", "custom_val", "bbox", "AP", "custom: box AP"),
    ReportTask("open-vocabulary", "zeroshot_val", "segm", "AP", "zero-shot: mask AP"),
    ReportTask("pre-training", "panoptic_val", "panoptic_seg", "PQ", "panoptic: PQ"),
]
BEFORE = {"custom_val": {"segm": {"AP": 2.0}, "bbox": {"AP": 4.0}}, "zeroshot_val": {"segm": {"AP": 30.0}},
          "panoptic_val": {"panoptic_seg": {"PQ": 60.0}}}
FULL = {"custom_val": {"segm": {"AP": 50.0}, "bbox": {"AP": 56.0}}, "zeroshot_val": {"segm": {"AP": 12.5}},
        "panoptic_val": {"panoptic_seg": {"PQ": 40.0}}}
ADAPTER = {"custom_val": {"segm": {"AP": 47.0}, "bbox": {"AP": None}}, "zeroshot_val": {"segm": {"AP": 29.0}},
           "panoptic_val": {"panoptic_seg": {"PQ": 59.0}}}


def test_rows_and_headline_numbers():
    facts = {"adapter": {"trainable": 10, "total": 1000, "weights_bytes": 2_000_000, "train_seconds": 42}}
    report = build_report(TASKS, BEFORE, {"full": FULL, "adapter": ADAPTER}, facts)
    rows = {row["task"]: row for row in report["rows"]}
    assert rows["custom: mask AP"]["runs"]["full"] == {"after": 50.0, "delta": 48.0}
    assert rows["custom: box AP"]["runs"]["adapter"] == {"after": None, "delta": None}
    assert report["runs"]["full"]["target_gain"] == pytest.approx((48.0 + 52.0) / 2)
    assert report["runs"]["adapter"]["target_gain"] == pytest.approx(45.0)  # the missing box AP is left out
    assert report["runs"]["full"]["open_vocabulary_loss"] == pytest.approx(17.5)
    assert report["runs"]["adapter"]["open_vocabulary_loss"] == pytest.approx(1.0)
    assert report["runs"]["full"]["pretraining_loss"] == pytest.approx(20.0)
    markdown = report_markdown(report)
    lines = markdown.splitlines()
    assert lines[0] == "| role | task | before | full (Δ) | adapter (Δ) |"
    assert "| target | custom: mask AP | 2.0 | 50.0 (+48.0) | 47.0 (+45.0) |" in lines
    assert "| summary | open-vocabulary loss (points lost, zero-shot names) | | +17.5 | +1.0 |" in lines
    assert "| summary | trainable parameters | | – | 1.00 % |" in lines
    assert "| summary | training time (s) | | – | 42 |" in lines


def test_run_folders_and_training_facts(tmp_path):
    full, adapter, empty = tmp_path / "full", tmp_path / "adapter", tmp_path / "empty"
    for folder in (full, adapter, empty):
        folder.mkdir()
    (full / "model_final.pth").write_bytes(b"x" * 1000)
    (adapter / "model_final.pth").write_bytes(b"x" * 1000)
    (adapter / "adapter_final.safetensors").write_bytes(b"x" * 30)
    (adapter / "log.txt").write_text(
        "[op.engine.finetune]: fine-tuning mode 'adapter': 1,234 of 5,000,000 parameters train (0.025 %)\n"
        "[d2.engine.hooks]: Overall training speed: 298 iterations in 0:01:40 (0.34 s / it)\n"
        "[d2.engine.hooks]: Total training time: 0:02:05 (0:00:25 on hooks)\n")
    run = FinetuneRun.from_output_dir("adapter", str(adapter), "before.pth")
    assert (run.weights, run.adapter) == ("before.pth", str(adapter / "adapter_final.safetensors"))
    assert training_facts(run) == {"weights_bytes": 30, "mode": "adapter", "trainable": 1234, "total": 5_000_000,
                                   "train_seconds": 125}
    run = FinetuneRun.from_output_dir("full", str(full), "before.pth")
    assert (run.weights, run.adapter) == (str(full / "model_final.pth"), "")
    assert training_facts(run) == {"weights_bytes": 1000}
    with pytest.raises(FileNotFoundError, match="neither"):
        FinetuneRun.from_output_dir("empty", str(empty), "before.pth")


def test_write_report(tmp_path):
    report = build_report(TASKS, BEFORE, {"full": FULL}, {})
    markdown = write_report(report, str(tmp_path / "out"))
    assert (tmp_path / "out" / "report.md").read_text() == markdown + "\n"
    assert json.loads((tmp_path / "out" / "report.json").read_text())["runs"]["full"]["target_gain"] == 50.0
