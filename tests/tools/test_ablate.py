"""tools/ablate.py: a two-arm, one-seed sweep end to end (table and plot), and the table's statistics."""

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from openseed.ablation.report import read_runs, summarize, table_markdown, write_report
from tests.tool_loader import load_tool, repo_pythonpath

REPO_ROOT = Path(__file__).resolve().parents[2]
SMOKE_OPTS = ('opts=[SOLVER.MAX_ITER,3,SOLVER.STEPS,"(2,)",SOLVER.WARMUP_ITERS,0,INPUT.IMAGE_SIZE,64,'
              'INPUT.MIN_SIZE_TEST,64,INPUT.MAX_SIZE_TEST,96]')


def _table_rows(path):
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in lines if line.startswith("| ")]
    return {row[0]: row[1:] for row in rows[1:]}


def test_sweep_writes_runs_table_and_plot(tmp_path):
    sweep = tmp_path / "sweep"
    env = dict(os.environ, PYTHONPATH=repo_pythonpath(), DETECTRON2_DATASETS=str(tmp_path / "datasets"),
               OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", WANDB_MODE="offline")
    command = [sys.executable, str(REPO_ROOT / "tools" / "ablate.py"), "--config-name", "mask_assist", "-m", "seed=0",
               f"hydra.sweep.dir={sweep}", "data.num_train=4", "data.num_val=2", SMOKE_OPTS]
    completed = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]

    runs = read_runs(str(sweep))
    assert [(r["arm"], r["seed"]) for r in runs] == [("with_assist", 0), ("without_assist", 0)]
    by_arm = {r["arm"]: r for r in runs}
    overrides = by_arm["with_assist"]["overrides"]
    assert overrides[overrides.index("MODEL.DECODER.O365_MASK_ASSIST") + 1] == "True"
    assert by_arm["with_assist"]["max_iter"] == 3
    for arm in by_arm:  # trained through train_net.py: its TensorBoard events and config are in the run's folder
        assert glob.glob(str(sweep / arm / "seed0" / "train" / "events.out.tfevents.*"))
        config = (sweep / arm / "seed0" / "train" / "config.yaml").read_text()
        assert f"O365_MASK_ASSIST: {str(arm == 'with_assist').lower()}" in config

    rows = _table_rows(sweep / "table.md")
    assert list(rows) == ["box_only_mask_AP", "box_only_box_AP", "PQ"]
    for name, cells in rows.items():
        off, on = by_arm["without_assist"]["metrics"][name], by_arm["with_assist"]["metrics"][name]
        assert cells[0] == f"{off:.2f} ± 0.00 (n=1)"
        assert cells[1] == f"{on:.2f} ± 0.00 (n=1)"
        assert cells[2] == f"{on - off:+.2f} ± 0.00"
        assert cells[3] == f"{int(on > off)}/1"
    assert (sweep / "plot.png").stat().st_size > 5000


def _run(tmp_path, arm, seed, values):
    folder = tmp_path / arm / f"seed{seed}"
    folder.mkdir(parents=True)
    run = {"experiment": "toy", "arm": arm, "seed": seed, "metrics": values, "arms": ["base", "new"],
           "metric_names": ["m", "n"]}
    (folder / "metrics.json").write_text(json.dumps(run))


def test_table_statistics_match_hand_computation(tmp_path):
    base, new = [10.0, 12.0, 17.0], [11.0, 15.0, 16.5]
    for seed in range(3):
        _run(tmp_path, "base", seed, {"m": base[seed], "n": None if seed == 2 else 1.0})
        _run(tmp_path, "new", seed, {"m": new[seed], "n": 2.0})
    _run(tmp_path, "new", 3, {"m": 99.0, "n": 2.0})  # unpaired: in the arm's mean, not in the paired difference
    table, plot = write_report(str(tmp_path), "toy", ["base", "new"], ["m", "n"])
    rows = _table_rows(table)
    assert rows["m"][0] == f"{np.mean(base):.2f} ± {np.std(base, ddof=1):.2f} (n=3)"
    assert rows["m"][1] == f"{np.mean(new + [99.0]):.2f} ± {np.std(new + [99.0], ddof=1):.2f} (n=4)"
    diffs = np.array(new) - np.array(base)
    assert rows["m"][2] == f"{diffs.mean():+.2f} ± {diffs.std(ddof=1):.2f}" and rows["m"][3] == "2/3"
    assert rows["n"][0] == "1.00 ± 0.00 (n=2)" and rows["n"][2:] == ["+1.00 ± 0.00", "2/2"]  # null left out
    assert os.path.isfile(plot)


def test_report_needs_two_arms_and_real_run_files(tmp_path):
    with pytest.raises(ValueError, match="two arms"):
        table_markdown("toy", ["a", "b", "c"], summarize([], ["m"]))
    (tmp_path / "arm" / "seed0").mkdir(parents=True)
    (tmp_path / "arm" / "seed0" / "metrics.json").write_text('{"arm": "arm"}')
    with pytest.raises(ValueError, match="lacks"):
        read_runs(str(tmp_path))


def _ablate_module():
    return load_tool("ablate")


def test_overrides_of_an_arm_and_unknown_arms():
    ablate = _ablate_module()
    cfg = OmegaConf.load(REPO_ROOT / "configs" / "ablations" / "decoupled.yaml")
    cfg.merge_with({"opts": ["SOLVER.MAX_ITER", 5], "seed": 2, "wandb": True, "arm": "shared"})
    opts = ablate.detectron2_overrides(cfg, "/tmp/run")
    pairs = dict(zip(opts[::2], opts[1::2]))
    assert pairs["MODEL.DECODER.DECOUPLED"] == "False" and pairs["SOLVER.MAX_ITER"] == "5"
    assert pairs["SEED"] == "2" and pairs["OUTPUT_DIR"] == "/tmp/run" and pairs["WANDB.GROUP"] == "decoupled"
    assert pairs["DATASETS.TEST"] == "('synabl_panoptic_val', 'synabl_boxes_val')"
    cfg.arm = "nope"
    with pytest.raises(KeyError, match="unknown arm 'nope'"):
        ablate.detectron2_overrides(cfg, "/tmp/run")


@pytest.mark.parametrize("experiment", ["mask_assist", "mask_assist_matching", "decoupled", "decoupled_seg_only",
                                        "joint_data"])
def test_sweeps_run_both_arms_of_a_seed_before_the_next_seed(experiment):
    from hydra import compose, initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs" / "ablations"), version_base=None):
        cfg = compose(experiment, return_hydra_config=True)
    params = [f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()] + ["seed=0,1"]  # as BasicSweeper.sweep
    jobs = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(params), None)[0]
    first, second = list(cfg.arms)
    assert [sorted(job) for job in jobs] == [sorted([f"seed={s}", f"arm={a}"]) for s in (0, 1) for a in (first, second)]
    assert cfg.arm == first and len(cfg.arms) == 2
