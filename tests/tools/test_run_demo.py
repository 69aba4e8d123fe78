"""`make demo` (tools/run_demo.py): the shortened pipeline end to end, the demo metrics and the pictures."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from detectron2.structures import Boxes, BoxMode, Instances
from PIL import Image

from openseed.demo.metrics import DEMO_METRICS, EVAL_DATASETS, REQUIRED_KEYS, collect_metrics, summary_table
from openseed.visualization import (
    draw_ground_truth,
    draw_prediction,
    plot_loss_curve,
    side_by_side,
    stack_rows,
)
from openseed.vocabulary import Vocabulary
from tests.tool_loader import script_path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_CONFIG = REPO_ROOT / "configs" / "demo" / "openseed_demo.yaml"


def _write_results(eval_dir: Path, dataset: str, results: dict) -> None:
    (eval_dir / dataset).mkdir(parents=True, exist_ok=True)
    (eval_dir / dataset / "results.json").write_text(json.dumps({"dataset": dataset, "results": results}))


def _fake_evaluation(eval_dir: Path) -> None:
    _write_results(eval_dir, "synthetic_panoptic_val", {
        "panoptic_seg": {"PQ": 55.0, "PQ_th": 60.0, "PQ_st": 45.0, "SQ": 80.0},
        "bbox": {"AP": 42.0}, "segm": {"AP": 44.5}, "sem_seg": {"mIoU": 70.25}})
    _write_results(eval_dir, "synthetic_boxes_val", {"bbox": {"AP": 38.0}})
    _write_results(eval_dir, "synthetic_boxes_val_masks", {"bbox": {"AP": 37.0}, "segm": {"AP": 21.0}})
    _write_results(eval_dir, "synthetic_zeroshot_val", {"bbox": {"AP": 12.0}, "segm": {"AP": None}})


def test_collect_metrics_maps_each_result(tmp_path):
    _fake_evaluation(tmp_path)
    metrics = collect_metrics(str(tmp_path))
    assert metrics == {
        "panoptic/PQ": 55.0, "panoptic/PQ_th": 60.0, "panoptic/PQ_st": 45.0, "panoptic/mask_AP": 44.5,
        "panoptic/box_AP": 42.0, "panoptic/mIoU": 70.25, "box_only/box_AP": 38.0, "box_only/mask_AP": 21.0,
        "zero_shot/AP": None, "zero_shot/box_AP": 12.0,
    }
    assert set(REQUIRED_KEYS) - set(metrics) == {"train_seconds"}


def test_summary_table_marks_targets(tmp_path):
    _fake_evaluation(tmp_path)
    metrics = collect_metrics(str(tmp_path)) | {"train_seconds": 512.3}
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in summary_table(metrics).splitlines()[2:]}
    assert rows["panoptic/PQ"] == ["55.0", "≥ 50", "met", "panoptic quality, things + stuff"]
    assert rows["box_only/box_AP"][:3] == ["38.0", "≥ 40", "NOT met"]
    assert rows["box_only/mask_AP"][2] == "met"
    assert rows["zero_shot/AP"][:3] == ["n/a", "≥ 10", "NOT met"]
    assert rows["panoptic/mIoU"][:3] == ["70.2", "", ""]
    assert rows["train_seconds"][:3] == ["512", "≤ 600", "met"]
    assert len(rows) == len(DEMO_METRICS) + 1


def test_missing_evaluation_names_the_file(tmp_path):
    _fake_evaluation(tmp_path)
    os.remove(tmp_path / "synthetic_zeroshot_val" / "results.json")
    with pytest.raises(FileNotFoundError, match="synthetic_zeroshot_val"):
        collect_metrics(str(tmp_path))
    _write_results(tmp_path, "synthetic_zeroshot_val", {"bbox": {"AP": 1.0}})
    with pytest.raises(KeyError, match="segm/AP"):
        collect_metrics(str(tmp_path))


def test_loss_curve_plot(tmp_path):
    lines = [{"iteration": i, "total_loss": 100.0 / (i + 1), "a.total_loss": 60.0 / (i + 1), "lr": 1e-4}
             for i in range(0, 40, 5)]
    lines.append({"iteration": 40, "eval/x": 1.0})
    metrics = tmp_path / "metrics.json"
    metrics.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    output = plot_loss_curve(str(metrics), str(tmp_path / "plots" / "loss.png"))
    image = np.asarray(Image.open(output))
    assert image.shape[0] > 100 and image.shape[1] > 100
    assert len(np.unique(image.reshape(-1, image.shape[-1]), axis=0)) > 10  # something was drawn
    metrics.write_text(json.dumps({"iteration": 0, "lr": 1.0}) + "\n")
    with pytest.raises(ValueError, match="total_loss"):
        plot_loss_curve(str(metrics), str(tmp_path / "empty.png"))
    metrics.write_text("{not json\n")
    with pytest.raises(ValueError, match="line 1"):
        plot_loss_curve(str(metrics), str(tmp_path / "bad.png"))


def test_panels_are_padded_and_titled():
    a = np.zeros((10, 20, 3), dtype=np.uint8)
    b = np.zeros((30, 5, 3), dtype=np.uint8)
    row = side_by_side([a, b], ["a", "b"], gap=4)
    assert row.shape == (30 + 22, 20 + 4 + 5, 3)
    assert (row[:22] > 0).any()  # the title bars
    grid = stack_rows([row, side_by_side([a])], gap=2)
    assert grid.shape == (row.shape[0] + 2 + 10, row.shape[1], 3)
    with pytest.raises(ValueError, match="titles"):
        side_by_side([a, b], ["only one"])


def _panoptic_record(tmp_path: Path) -> dict:
    image = np.full((32, 48, 3), 120, dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "image.png")
    ids = np.zeros((32, 48), dtype=np.uint32)
    ids[:, :] = 7
    ids[8:20, 10:30] = 5
    Image.fromarray(np.stack([ids % 256, ids // 256, ids // 65536], axis=-1).astype(np.uint8)).save(
        tmp_path / "pan.png")
    return {"file_name": str(tmp_path / "image.png"), "pan_seg_file_name": str(tmp_path / "pan.png"),
            "height": 32, "width": 48,
            "segments_info": [{"id": 5, "category_id": 0, "isthing": True, "bbox": [10, 8, 20, 12], "iscrowd": 0},
                              {"id": 7, "category_id": 1, "isthing": False, "bbox": [0, 0, 48, 32], "iscrowd": 0}]}


def test_ground_truth_and_predictions_are_drawn(tmp_path):
    vocab = Vocabulary.from_names(["red square"], ["grass"])
    colors = [[250, 0, 0], [0, 250, 0]]
    record = _panoptic_record(tmp_path)
    plain = np.asarray(Image.open(record["file_name"]))
    for kind in ("panoptic", "instance"):
        drawn = draw_ground_truth(record, vocab, kind, colors=colors, scale=1.0)
        assert drawn.shape == (32, 48, 3) and not np.array_equal(drawn, plain)
    box_record = {"file_name": record["file_name"], "height": 32, "width": 48,
                  "annotations": [{"bbox": [10, 8, 20, 12], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0}]}
    assert not np.array_equal(draw_ground_truth(box_record, vocab, "instance", scale=1.0), plain)

    instances = Instances((32, 48))
    instances.pred_boxes = Boxes(torch.tensor([[10.0, 8.0, 30.0, 20.0], [0.0, 0.0, 5.0, 5.0]]))
    instances.scores = torch.tensor([0.9, 0.1])
    instances.pred_classes = torch.tensor([0, 0])
    instances.pred_masks = torch.zeros(2, 32, 48, dtype=torch.bool)
    instances.pred_masks[0, 8:20, 10:30] = True
    ids = torch.from_numpy(np.where(instances.pred_masks[0].numpy(), 1, 2).astype(np.int32))
    outputs = {"instances": instances, "sem_seg": torch.rand(2, 32, 48),
               "panoptic_seg": (ids, [{"id": 1, "isthing": True, "category_id": 0},
                                      {"id": 2, "isthing": False, "category_id": 1}])}
    for task in ("panoptic", "instance", "semantic", "detection"):
        drawn = draw_prediction(plain, outputs, vocab, task, scale=2.0)
        assert drawn.shape == (64, 96, 3) and not np.array_equal(drawn[::2, ::2], plain)
    with pytest.raises(ValueError, match="task"):
        draw_prediction(plain, outputs, vocab, "depth")


@pytest.mark.slow
def test_shortened_demo_pipeline(tmp_path):
    """`tools/run_demo.py` with tiny synthetic sets and a few iterations: every file and metric key is there."""
    output = tmp_path / "demo"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    command = [sys.executable, str(script_path("tools/run_demo.py")), "--config-file", str(DEMO_CONFIG),
               "--output", str(output), "--datasets-root", str(tmp_path / "datasets"), "--num-train", "6",
               "--num-val", "3", "--num-pictures", "2",
               "SOLVER.MAX_ITER", "4", "SOLVER.STEPS", "(3,)", "SOLVER.WARMUP_ITERS", "0", "SOLVER.LOG_PERIOD", "1",
               "MODEL.TEXT.EVAL_PROMPT_ENSEMBLE", "False"]
    completed = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]

    assert (tmp_path / "datasets" / "synthetic" / "manifest.json").is_file()
    for name in ("model_final.pth", "metrics.json", "summary.md", "loss_curve.png"):
        assert (output / name).is_file(), name
    weights = torch.load(output / "model_final.pth", map_location="cpu", weights_only=True)
    assert any(key.startswith("sem_seg_head.predictor.lang_encoder.lang_encoder.") for key in weights["model"])
    assert weights["iteration"] == 3

    metrics = json.loads((output / "metrics.json").read_text())
    assert set(REQUIRED_KEYS) <= set(metrics)
    assert all(value is None or 0.0 <= value <= 100.0 for key, value in metrics.items() if key != "train_seconds")
    assert metrics["train_seconds"] > 0
    for dataset in EVAL_DATASETS:
        assert (output / "eval" / dataset / "results.json").is_file()

    pictures = sorted(p.name for p in (output / "pictures").iterdir())
    assert pictures == ["box_only.png", "instance.png", "panoptic.png", "zero_shot.png"]
    assert Image.open(output / "pictures" / "panoptic.png").size[1] > 2 * 22  # two rows with titles
    assert "| panoptic/PQ |" in completed.stdout and "train_seconds" in completed.stdout
    assert "iter: 3" in completed.stdout + completed.stderr  # the training progress line was shown
