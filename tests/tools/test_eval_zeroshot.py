"""`tools/eval_zeroshot.py`: the synthetic suite end to end with the tiny model (random weights), re-use of stored
results without `--force`, two gloo processes giving the one-process metrics, and command-line checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from detectron2.modeling import build_model

import openseed.modeling  # noqa: F401  (registers the meta-architecture)
from openseed.checkpoint.io import save_checkpoint
from openseed.commands import eval_zeroshot
from openseed.config import setup_cfg
from openseed.data.registration.suites import suite_datasets
from openseed.data.synthetic import generate_synthetic_datasets
from tests.tool_loader import repo_pythonpath, script_path

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOL = script_path("tools/eval_zeroshot.py")
TINY_CONFIG = str(REPO_ROOT / "configs" / "tiny" / "tiny_decoupled.yaml")
SYNTHETIC = suite_datasets("synthetic")




@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    """A `$DETECTRON2_DATASETS` with a small synthetic generation, and random tiny-model weights."""
    root = tmp_path_factory.mktemp("eval_tool")
    generate_synthetic_datasets(str(root / "datasets" / "synthetic"), seed=0, num_train=1, num_val=2)
    torch.manual_seed(0)
    weights = root / "tiny_random.pth"
    save_checkpoint({"model": build_model(setup_cfg(TINY_CONFIG)).state_dict()}, weights)
    return {"datasets": str(root / "datasets"), "weights": str(weights)}


def run_tool(args: list[str], datasets_root: str, timeout: float = 400) -> subprocess.CompletedProcess:
    env = dict(os.environ, DETECTRON2_DATASETS=datasets_root, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", PYTHONPATH=repo_pythonpath())
    return subprocess.run([sys.executable, str(TOOL), *args], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)


def results_of(output: Path) -> dict:
    return {n: json.loads((output / n / "results.json").read_text())["results"] for n in SYNTHETIC}


@pytest.fixture(scope="module")
def first_run(setup, tmp_path_factory) -> dict:
    """The synthetic suite evaluated once (one process)."""
    output = tmp_path_factory.mktemp("zeroshot") / "out"
    args = ["--config-file", TINY_CONFIG, "--weights", setup["weights"], "--suite", "synthetic",
            "--output", str(output)]
    return {"args": args, "output": output, "process": run_tool(args, setup["datasets"])}


@pytest.mark.slow
def test_synthetic_suite_end_to_end_and_reuse(setup, first_run):
    first, output = first_run["process"], first_run["output"]
    assert first.returncode == 0, first.stdout[-5000:]
    assert first.stdout.count("Start inference on 2 batches") == len(SYNTHETIC)
    assert "| dataset | PQ | mask AP | box AP | mIoU |" in first.stdout
    for name in SYNTHETIC:
        assert f"| {name} |" in first.stdout
    summary = json.loads((output / "summary.json").read_text())
    assert [row["name"] for row in summary["rows"]] == list(SYNTHETIC)
    assert summary["markdown"] in first.stdout
    assert any((output / "text_cache").iterdir())  # the vocabularies' embeddings, for the next evaluation
    stored = results_of(output)
    assert set(stored["synthetic_panoptic_val"]) == {"panoptic_seg", "bbox", "segm", "sem_seg"}
    assert set(stored["synthetic_odinw_val"]) == {"bbox"}
    weights = json.loads((output / "synthetic_lvis_val" / "results.json").read_text())["weights"]
    assert weights["path"] == setup["weights"]
    mtimes = {n: (output / n / "results.json").stat().st_mtime_ns for n in SYNTHETIC}

    second = run_tool(first_run["args"], setup["datasets"])
    assert second.returncode == 0, second.stdout[-5000:]
    assert "Start inference" not in second.stdout
    assert second.stdout.count("re-using stored results") == len(SYNTHETIC)
    assert {n: (output / n / "results.json").stat().st_mtime_ns for n in SYNTHETIC} == mtimes
    assert summary["markdown"] in second.stdout


@pytest.mark.slow
def test_two_processes_give_the_single_process_metrics(setup, first_run, tmp_path):
    names = ["synthetic_panoptic_val", "synthetic_lvis_val", "synthetic_odinw_val"]
    double = run_tool(["--config-file", TINY_CONFIG, "--weights", setup["weights"], "--datasets", *names,
                       "--output", str(tmp_path), "--num-gpus", "2"], setup["datasets"])
    assert double.returncode == 0, double.stdout[-5000:]
    for name in names:
        one = json.loads((first_run["output"] / name / "results.json").read_text())["results"]
        two = json.loads((tmp_path / name / "results.json").read_text())["results"]
        assert two.keys() == one.keys()
        for group in one:
            assert two[group] == pytest.approx(one[group], abs=1e-6), (name, group)


def test_dataset_selection_and_arguments():
    assert eval_zeroshot.dataset_names(["synthetic"], ["synthetic_odinw_val", "coco_2017_val"]) == [
        *SYNTHETIC, "coco_2017_val"]
    with pytest.raises(ValueError, match="--suite"):
        eval_zeroshot.dataset_names([], [])
    parser = eval_zeroshot.argument_parser()
    args = parser.parse_args(["--suite", "lvis", "odinw13", "--output", "out", "MODEL.DEVICE", "cpu"])
    assert args.suite == ["lvis", "odinw13"] and args.opts == ["MODEL.DEVICE", "cpu"]
    assert eval_zeroshot.config_overrides(args) == ["MODEL.DEVICE", "cpu", "OUTPUT_DIR", "out",
                                           "MODEL.TEXT.CACHE_DIR", os.path.join("out", "text_cache")]
    args = parser.parse_args(["--weights", "w.pth", "--output", "out", "MODEL.TEXT.CACHE_DIR", "/cache"])
    assert eval_zeroshot.config_overrides(args) == ["MODEL.TEXT.CACHE_DIR", "/cache", "OUTPUT_DIR", "out",
                                           "MODEL.WEIGHTS", "w.pth"]
    with pytest.raises(SystemExit):
        parser.parse_args(["--suite", "no_such_suite", "--output", "out"])


@pytest.mark.slow
def test_missing_dataset_files_fail_with_their_path(tmp_path):
    result = run_tool(["--config-file", TINY_CONFIG, "--datasets", "synthetic_odinw_val",
                       "--output", str(tmp_path / "out")], str(tmp_path / "empty"), timeout=200)
    assert result.returncode != 0
    assert "DatasetFilesMissing" in result.stdout
    assert str(tmp_path / "empty" / "synthetic" / "odinw" / "val" / "instances.json") in result.stdout
