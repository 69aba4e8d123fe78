"""`make demo` (tools/run_demo.py): data, training, evaluation, metrics, pictures (`run_demo`, and its steps).

Training and evaluation run the project's own command lines (`openseed.commands.train_net`,
`openseed.commands.eval_zeroshot`, as `python -m`) in child processes, with their console output (progress line with
iteration, losses and ETA; evaluation progress bars) passed straight through. Files under the demo output folder:

    train/                     the training run (config.yaml, log.txt, Detectron2's metrics.json lines, checkpoints)
    eval/<dataset>/            the evaluation results per dataset (results.json and the evaluators' dumps)
    model_final.pth            the trained weights
    metrics.json               flat demo metrics (openseed.demo.metrics.REQUIRED_KEYS and more)
    summary.md                 the printed summary table
    loss_curve.png             training losses against the iteration
    pictures/*.png             ground truth next to predictions on val images (openseed.demo.gallery)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from openseed.checkpoint.io import atomic_write
from openseed.data.paths import datasets_root
from openseed.data.registration.synthetic import register_synthetic_datasets
from openseed.data.synthetic import ensure_synthetic_datasets
from openseed.predictor import Predictor
from openseed.visualization import plot_loss_curve

from . import gallery
from .metrics import EVAL_DATASETS, collect_metrics, summary_table

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoPaths:
    """Where every file of a demo run goes (see the module docstring)."""

    output: Path

    @property
    def train_dir(self) -> Path:
        return self.output / "train"

    @property
    def eval_dir(self) -> Path:
        return self.output / "eval"

    @property
    def weights(self) -> Path:
        return self.output / "model_final.pth"

    @property
    def metrics(self) -> Path:
        return self.output / "metrics.json"

    @property
    def summary(self) -> Path:
        return self.output / "summary.md"

    @property
    def loss_curve(self) -> Path:
        return self.output / "loss_curve.png"

    @property
    def pictures_dir(self) -> Path:
        return self.output / "pictures"


class DemoStepFailed(RuntimeError):
    """A child process of the demo (training or evaluation) exited with an error."""


def run_tool(command: list[str], step: str, env: dict[str, str]) -> float:
    """Run a command with its output passed through; returns its wall time in seconds, raises if it fails."""
    logger.info(f"{step}: {' '.join(command)}")
    start = time.perf_counter()
    completed = subprocess.run(command, env=env, check=False)
    seconds = time.perf_counter() - start
    if completed.returncode != 0:
        raise DemoStepFailed(f"{step} failed (exit code {completed.returncode}) after {seconds:.0f} s; "
                             f"command: {' '.join(command)}")
    return seconds


def train(config_file: str, paths: DemoPaths, opts: list[str], env: dict[str, str]) -> float:
    """`openseed.commands.train_net` into `paths.train_dir` (a fresh run); copies the final weights to `paths.weights`.

    Returns the wall time of the training process (model building, data loading and the training loop).
    """
    if paths.train_dir.exists():
        shutil.rmtree(paths.train_dir)
    command = [sys.executable, "-m", "openseed.commands.train_net", "--config-file", config_file, *opts,
               "OUTPUT_DIR", str(paths.train_dir)]
    seconds = run_tool(command, "training", env)
    final = paths.train_dir / "model_final.pth"
    if not final.is_file():
        raise DemoStepFailed(f"training finished without writing {final}")
    shutil.copyfile(final, paths.weights)
    return seconds


def evaluate(config_file: str, paths: DemoPaths, opts: list[str], env: dict[str, str]) -> float:
    """`openseed.commands.eval_zeroshot` on the demo's evaluation sets (`metrics.EVAL_DATASETS`) into
    `paths.eval_dir`."""
    command = [sys.executable, "-m", "openseed.commands.eval_zeroshot", "--config-file", config_file,
               "--weights", str(paths.weights), "--datasets", *EVAL_DATASETS, "--output", str(paths.eval_dir),
               "--force", "--paper-model", "none", *opts]
    return run_tool(command, "evaluation", env)


def write_metrics(path: Path, metrics: dict) -> None:
    """The flat metrics object as JSON, written atomically."""
    content = json.dumps(metrics, indent=2, sort_keys=True, allow_nan=False).encode("utf-8")
    atomic_write(path, lambda handle: handle.write(content))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)  # the temporary file of the atomic write is private; the result is not


def child_environment(datasets_root: str, num_threads: int) -> dict[str, str]:
    """The environment of the child processes: offline, the datasets root the demo generated, and `num_threads`
    intra-op CPU threads (OpenMP / MKL)."""
    if num_threads < 1:
        raise ValueError(f"--num-threads must be at least 1, got {num_threads}")
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", DETECTRON2_DATASETS=os.path.abspath(datasets_root),
               OMP_NUM_THREADS=str(num_threads), MKL_NUM_THREADS=str(num_threads))
    env.setdefault("WANDB_MODE", "offline")
    return env


@dataclass(frozen=True)
class DemoSettings:
    """What `run_demo` does: `config_file`, the `output` folder, the datasets folder (`None`: `$DETECTRON2_DATASETS`
    or ./datasets; the synthetic sets live in its `synthetic/`), the synthetic generation (`seed`, images per
    training / evaluation set), val images drawn per picture kind, intra-op CPU threads of training and evaluation,
    and `KEY VALUE` config overrides applied to training, evaluation and the pictures alike."""

    config_file: str
    output: str
    datasets_root: str | None = None
    seed: int = 0
    num_train: int = 300
    num_val: int = 50
    num_pictures: int = 4
    num_threads: int = 1
    opts: tuple[str, ...] = ()


def run_demo(settings: DemoSettings) -> dict:
    """The whole demo: synthetic data (generated when missing), training, evaluation, metrics.json, summary.md, the
    loss curve and the pictures under `settings.output`; prints the summary and returns the flat metrics. Raises
    `DemoStepFailed` when training or evaluation fails."""
    paths = DemoPaths(Path(settings.output).resolve())
    paths.output.mkdir(parents=True, exist_ok=True)
    root = os.path.abspath(settings.datasets_root or datasets_root())
    opts = list(settings.opts)

    logger.info("[1/4] synthetic datasets")
    synthetic_root = ensure_synthetic_datasets(os.path.join(root, "synthetic"), seed=settings.seed,
                                               num_train=settings.num_train, num_val=settings.num_val)
    register_synthetic_datasets(synthetic_root)
    env = child_environment(root, settings.num_threads)
    torch.set_num_threads(settings.num_threads)

    logger.info("[2/4] training (openseed.commands.train_net)")
    train_seconds = train(settings.config_file, paths, opts, env)
    logger.info("[3/4] evaluation (openseed.commands.eval_zeroshot)")
    evaluate(settings.config_file, paths, opts, env)

    metrics = collect_metrics(str(paths.eval_dir))
    metrics["train_seconds"] = round(train_seconds, 1)
    write_metrics(paths.metrics, metrics)
    table = summary_table(metrics)
    paths.summary.write_text(table + "\n", encoding="utf-8")

    logger.info("[4/4] loss curve and pictures")
    plot_loss_curve(str(paths.train_dir / "metrics.json"), str(paths.loss_curve))
    predictor = Predictor(settings.config_file, paths.weights, opts=opts)
    pictures = gallery.draw_gallery(predictor, paths.pictures_dir, num_images=settings.num_pictures)

    print(f"\nOpenSeeD demo ({paths.output})\n\n{table}\n", flush=True)
    print("files: " + ", ".join(str(p.relative_to(paths.output)) for p in
                                [paths.weights, paths.metrics, paths.summary, paths.loss_curve, *pictures]))
    return metrics
