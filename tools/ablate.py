#!/usr/bin/env python
"""Ablations at toy scale: one experiment file names two arms as config overrides; a hydra multirun sweeps the seeds.

    python tools/ablate.py --config-name mask_assist -m seed=0,1,2          # both arms × 3 seeds, then the table
    python tools/ablate.py --config-name decoupled -m seed=0,1,2 wandb=true # also log to W&B (offline)
    python tools/ablate.py --config-name mask_assist arm=with_assist seed=4  # one run
    python -m openseed.ablation output/ablations/mask_assist                # the table of the runs found there

Experiment files are `configs/ablations/*.yaml` (hydra composition): `config_file` (a Detectron2 config), `opts`
(overrides common to every arm), `arms` ({name: [KEY, VALUE, ...]}, exactly two, the first is the baseline),
`metrics` ({name: [dataset, group, metric]}, read from the evaluation results), `data` (the ablation benchmark's
generation: seed, num_train, num_val; `openseed.data.synthetic.ablation`). Their `hydra.sweeper.params` sweep both
arms, so `-m seed=0,1,2` runs 2 × 3 jobs.

Each job trains and evaluates through tools/train_net.py's `main` (the evaluation of `DATASETS.TEST` after the
last iteration) in `<sweep dir>/<arm>/seed<k>/train` (TensorBoard events and Detectron2's metrics.json there; W&B
runs grouped by experiment with `wandb=true`) and writes `<sweep dir>/<arm>/seed<k>/metrics.json`. When the
multirun ends, `openseed.ablation.callbacks.TableCallback` writes `table.md` and `plot.png` into the sweep dir
(`output/ablations/<experiment>` unless `hydra.sweep.dir=...`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from openseed.commands import train_net  # the training and evaluation code path of tools/train_net.py
from openseed.config import setup_cfg
from openseed.data.registration.synthetic import register_synthetic_datasets
from openseed.data.synthetic import ensure_synthetic_datasets

TOOLS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TOOLS_DIR.parent


def detectron2_overrides(cfg: DictConfig, train_dir: str) -> list[str]:
    """`KEY VALUE` overrides of one run: the common ones, the arm's, the seed, the output and the evaluation sets."""
    if cfg.arm not in cfg.arms:
        raise KeyError(f"experiment {cfg.experiment!r}: unknown arm {cfg.arm!r}; its arms are {list(cfg.arms)}")
    arm_opts = [str(v) for v in cfg.arms[cfg.arm]]
    if len(arm_opts) % 2:
        raise ValueError(f"experiment {cfg.experiment!r}: arm {cfg.arm!r} overrides must be KEY VALUE pairs")
    datasets = tuple(dict.fromkeys(str(spec[0]) for spec in cfg.metrics.values()))
    opts = [str(v) for v in cfg.opts] + arm_opts
    opts += ["SEED", str(cfg.seed), "OUTPUT_DIR", train_dir, "DATASETS.TEST", repr(datasets), "TEST.EVAL_PERIOD", "0"]
    if cfg.wandb:
        opts += ["WANDB.ENABLED", "True", "WANDB.NAME", f"{cfg.arm}/seed{cfg.seed}", "WANDB.GROUP", cfg.experiment]
    return opts


def read_metrics(cfg: DictConfig, eval_dir: str) -> dict[str, float | None]:
    """{metric name: value} from `eval_dir/<dataset>/results.json` as the experiment's `metrics` name them."""
    values = {}
    for name, (dataset, group, key) in cfg.metrics.items():
        path = os.path.join(eval_dir, dataset, "results.json")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} does not exist: the evaluation of {dataset} after training did not run")
        with open(path, encoding="utf-8") as f:
            results = json.load(f)["results"]
        if group not in results or key not in results[group]:
            raise KeyError(f"{path}: no {group}/{key} for the metric {name!r} (groups: {sorted(results)})")
        value = results[group][key]
        values[name] = None if value is None else float(value)
    return values


@hydra.main(version_base=None, config_path="../configs/ablations", config_name=None)
def main(cfg: DictConfig) -> dict:
    run_dir = HydraConfig.get().runtime.output_dir
    train_dir = os.path.join(run_dir, "train")
    data = cfg.data
    root = ensure_synthetic_datasets(seed=data.seed, num_train=data.num_train, num_val=data.num_val,
                                     family="ablation")
    register_synthetic_datasets(root, family="ablation")
    config_file = str(REPO_ROOT / cfg.config_file) if not os.path.isabs(cfg.config_file) else cfg.config_file
    opts = detectron2_overrides(cfg, train_dir)
    args = train_net.default_argument_parser().parse_args(["--config-file", config_file, *opts])
    wall, cpu = time.perf_counter(), time.process_time()
    train_net.main(args)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    max_iter = setup_cfg(config_file, opts).SOLVER.MAX_ITER
    metrics = read_metrics(cfg, os.path.join(train_dir, "eval", f"iter_{max_iter:07d}"))
    run = {"experiment": cfg.experiment, "arm": cfg.arm, "seed": int(cfg.seed), "metrics": metrics,
           "arms": list(cfg.arms), "metric_names": list(cfg.metrics), "wall_seconds": round(wall, 1),
           "cpu_seconds": round(cpu, 1), "max_iter": max_iter, "config_file": cfg.config_file, "overrides": opts,
           "experiment_config": OmegaConf.to_container(cfg, resolve=True)}
    with open(os.path.join(run_dir, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(run, f, indent=2)
    return metrics


if __name__ == "__main__":
    main()
