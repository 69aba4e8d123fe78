"""The trainer on a stand-in model and loader: checkpoints, metrics, exact resume, non-finite losses, evaluation."""

import json
import random

import numpy as np
import pytest
import torch
from detectron2.engine import HookBase
from detectron2.utils.env import seed_all_rng

from openseed.checkpoint.io import load_checkpoint, save_checkpoint
from openseed.engine.trainer import OpenSeeDTrainer
from tests.engine.engine_standins import DATASETS, StandInModel, StandInTrainer, standin_config


def read_metrics(output_dir) -> dict[int, dict]:
    """metrics.json as {iteration: record}; a later record of the same iteration (after a resume) wins."""
    records = {}
    with open(output_dir / "metrics.json") as f:
        for line in f:
            record = json.loads(line)
            records.setdefault(record["iteration"], {}).update(record)
    return records


def run(cfg, resume=False, trainer_class=StandInTrainer, extra_hooks=(), evaluate_function=None):
    seed_all_rng(1234)
    trainer = trainer_class(cfg, evaluate_function=evaluate_function)
    trainer.register_hooks(list(extra_hooks))
    trainer.resume_or_load(resume=resume)
    trainer.train()
    return trainer


class CrashAt(HookBase):
    """Simulates a crash after iteration `iteration` finished (its hooks, incl. checkpointing, ran)."""

    def __init__(self, iteration):
        self.iteration = iteration

    def after_step(self):
        if self.trainer.iter == self.iteration:
            raise KeyboardInterrupt("simulated crash")


def test_training_writes_checkpoints_and_metrics(tmp_path):
    cfg = standin_config(tmp_path, max_iter=30, checkpoint_period=10)
    run(cfg)
    names = sorted(p.name for p in tmp_path.glob("*.pth"))
    assert names == ["model_0000009.pth", "model_0000019.pth", "model_final.pth"]
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    checkpoint = load_checkpoint(tmp_path / "model_0000019.pth")  # weights_only=True
    assert checkpoint["iteration"] == 19 and checkpoint["trainer"]["iteration"] == 19
    assert set(checkpoint["model"]) == set(StandInModel().state_dict())
    assert len(checkpoint["rng_states"]) == 1 and set(checkpoint["rng_states"][0]) == {"torch", "cuda", "numpy", "python"}
    assert "optimizer" in checkpoint["trainer"]["_trainer"] and "LRScheduler" in checkpoint["trainer"]["hooks"]

    metrics = read_metrics(tmp_path)
    assert sorted(metrics) == list(range(30))
    for record in metrics.values():
        terms = {k: v for k, v in record.items() if k.split(".")[-1].startswith("loss_")}
        assert len(terms) == 4
        for name in DATASETS:
            assert record[f"{name}.total_loss"] == pytest.approx(record[f"{name}.loss_fit"] + record[f"{name}.loss_aux"])
        assert record["total_loss"] == pytest.approx(sum(terms.values()))
        assert np.isfinite(record["grad_norm"])
    # warm-up (factor 0.5 over 2 iterations), then the base LR, then x0.1 after the step at iteration 15
    assert metrics[0]["lr"] == pytest.approx(0.01)
    assert metrics[5]["lr"] == pytest.approx(0.02)
    assert metrics[20]["lr"] == pytest.approx(0.002)
    first = np.mean([metrics[i]["total_loss"] for i in range(3)])
    last = np.mean([metrics[i]["total_loss"] for i in range(27, 30)])
    assert last < 0.5 * first
    assert list(tmp_path.glob("events.out.tfevents.*"))


def test_resume_repeats_the_uninterrupted_run_exactly(tmp_path):
    full_dir, crash_dir = tmp_path / "full", tmp_path / "crash"
    full = run(standin_config(full_dir, max_iter=12, checkpoint_period=6))
    with pytest.raises(KeyboardInterrupt):
        run(standin_config(crash_dir, max_iter=12, checkpoint_period=6), extra_hooks=[CrashAt(8)])
    assert (crash_dir / "last_checkpoint").read_text() == "model_0000005.pth"

    # Scramble every generator: the resumed run must restore them from the checkpoint.
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    resumed = run(standin_config(crash_dir, max_iter=12, checkpoint_period=6), resume=True)
    assert resumed.start_iter == 6

    full_metrics, resumed_metrics = read_metrics(full_dir), read_metrics(crash_dir)
    for iteration in range(6, 12):
        for key in ("total_loss", "engine_standin_a.loss_fit", "engine_standin_b.loss_fit", "grad_norm", "lr"):
            assert resumed_metrics[iteration][key] == full_metrics[iteration][key], (iteration, key)
    for (name, a), b in zip(full.model_without_ddp.state_dict().items(), resumed.model_without_ddp.state_dict().values()):
        assert torch.equal(a, b), name


def test_resume_without_checkpoint_starts_from_scratch(tmp_path):
    trainer = run(standin_config(tmp_path, max_iter=2, checkpoint_period=0), resume=True)
    assert trainer.start_iter == 0 and (tmp_path / "model_final.pth").is_file()


class NaNOnFifthForward(StandInTrainer):
    @classmethod
    def build_model(cls, cfg):
        return StandInModel(nan_at_call=5)


def test_nonfinite_loss_stops_and_keeps_the_last_checkpoint(tmp_path):
    cfg = standin_config(tmp_path, max_iter=10, checkpoint_period=2)
    seed_all_rng(0)
    trainer = NaNOnFifthForward(cfg)
    trainer.resume_or_load(resume=False)
    with pytest.raises(FloatingPointError) as error:
        trainer.train()
    message = str(error.value)
    assert "iteration 4" in message and "engine_standin_a.loss_fit" in message and "nan" in message
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000003.pth"
    assert not (tmp_path / "model_final.pth").exists()
    saved = load_checkpoint(tmp_path / "model_0000003.pth")["model"]
    for name, value in trainer.model_without_ddp.state_dict().items():
        assert torch.isfinite(value).all(), name
        assert torch.equal(value, saved[name]), name  # no update happened after the last good step


def test_evaluation_is_logged_and_does_not_change_training(tmp_path):
    calls = []

    def evaluate(model, cfg, output_dir):
        assert not model.training
        calls.append(output_dir)
        torch.rand(100), np.random.rand(10), random.random()  # evaluation may draw random numbers
        return {"synthetic_val": {"PQ": 12.5, "note": "text is dropped"}}

    with_eval = run(standin_config(tmp_path / "eval", 6, 0, **{"TEST.EVAL_PERIOD": 2}), evaluate_function=evaluate)
    without = run(standin_config(tmp_path / "plain", 6, 0))
    assert [c.rsplit("/", 1)[-1] for c in calls] == ["iter_0000002", "iter_0000004", "iter_0000006"]
    assert with_eval.model_without_ddp.training
    metrics = read_metrics(tmp_path / "eval")
    assert metrics[1]["synthetic_val/PQ"] == 12.5 and "synthetic_val/note" not in metrics[1]
    for iteration, record in read_metrics(tmp_path / "plain").items():
        assert metrics[iteration]["total_loss"] == record["total_loss"]
    for a, b in zip(with_eval.model_without_ddp.parameters(), without.model_without_ddp.parameters()):
        assert torch.equal(a, b)


def test_unregistered_training_dataset_is_named(tmp_path):
    cfg = standin_config(tmp_path, 2, 0, **{"DATASETS.TRAIN": ("engine_standin_a", "no_such_dataset_xyz")})
    with pytest.raises(KeyError, match="no_such_dataset_xyz.*|DATASETS.TRAIN"):
        OpenSeeDTrainer(cfg)


def test_train_before_resume_or_load_is_an_error(tmp_path):
    trainer = StandInTrainer(standin_config(tmp_path, 2, 0))
    with pytest.raises(RuntimeError, match="resume_or_load"):
        trainer.train()


def test_backbone_init_weights_are_loaded_before_training(tmp_path):
    weight, bias = torch.full((8, 4), 0.25), torch.arange(8.0)
    save_checkpoint({"model": {"weight": weight, "bias": bias, "head.weight": torch.zeros(1000, 8)}},
                    tmp_path / "imagenet.pth")
    cfg = standin_config(tmp_path, max_iter=2, checkpoint_period=0)
    cfg.defrost()
    cfg.MODEL.BACKBONE.INIT_WEIGHTS = str(tmp_path / "imagenet.pth")
    trainer = StandInTrainer(cfg)
    head_before = trainer.model.head.weight.detach().clone()
    trainer.resume_or_load(resume=False)
    assert torch.equal(trainer.model.backbone.weight, weight) and torch.equal(trainer.model.backbone.bias, bias)
    assert torch.equal(trainer.model.head.weight, head_before)
