"""`OpenSeeDTrainer`: Detectron2's `DefaultTrainer` workflow for joint OpenSeeD training (docs/official_behaviours.md §8, §11, §12).

    trainer = OpenSeeDTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    trainer.train()

Construction builds the model (on `MODEL.DEVICE`), the optimizer (`optimizer.py`), DDP when several processes run,
the LR schedule (Detectron2's `build_lr_scheduler`, WarmupMultiStepLR by default), the checkpointer and the hooks.
`resume_or_load` either resumes from the last complete checkpoint in `OUTPUT_DIR` (model, optimizer, scheduler,
grad scaler, iteration, RNG states of every rank; the data loader restarts at the next batch) or loads the initial
weights `MODEL.WEIGHTS`, `MODEL.BACKBONE.INIT_WEIGHTS` and `MODEL.TEXT.INIT_WEIGHTS`. The train loader is built afterwards, for the start
iteration, so that a resumed run sees exactly the batches of the uninterrupted one. SIGTERM / SIGUSR1 during
`train()` checkpoint after the current step and exit with status 75 (`preemption.py`).
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Callable, Mapping

import torch
from detectron2.data import DatasetCatalog
from detectron2.engine import TrainerBase
from detectron2.engine import hooks as d2_hooks
from detectron2.modeling import build_model
from detectron2.solver import build_lr_scheduler
from detectron2.utils import comm
from torch.nn.parallel import DistributedDataParallel

from openseed.checkpoint import initialise_backbone, initialise_text_encoder, load_adapter
from openseed.data import build_joint_train_loader
from openseed.data.registration.common import closest_registered_names
from openseed.engine.checkpointer import TrainingCheckpointer
from openseed.engine.finetune import apply_finetune_config, count_parameters
from openseed.engine.hooks import ParameterSyncCheck, PeriodicCheckpointer, PeriodicEvaluation
from openseed.engine.optimizer import build_optimizer
from openseed.engine.preemption import PreemptionCheckpointer
from openseed.engine.rng_state import restore_rng_state
from openseed.engine.step import JointStepTrainer
from openseed.engine.writers import build_writers
from openseed.utils.amp import autocast_dtype

logger = logging.getLogger(__name__)


def check_datasets_registered(names, config_key: str) -> None:
    """Raise `KeyError` naming every dataset of `names` (from config key `config_key`) that is not registered, each
    with the registered names closest to it."""
    registered = set(DatasetCatalog.list())
    missing = [name for name in names if name not in registered]
    if missing:
        closest = "; ".join(f"{name!r}: closest registered names {closest_registered_names(name) or 'none'}"
                            for name in missing)
        raise KeyError(
            f"{config_key}: dataset(s) {missing} are not registered ({closest}); custom COCO-format data can be "
            "added with DATASETS.CUSTOM ('name:json_file:image_root')"
        )


def wrap_for_distributed(model: torch.nn.Module, device: torch.device, find_unused_parameters: bool) -> torch.nn.Module:
    """`model` itself in a single process, else DDP (device_ids only on CUDA; gloo on CPU)."""
    if comm.get_world_size() == 1:
        return model
    device_ids = [device.index if device.index is not None else comm.get_local_rank()] if device.type == "cuda" else None
    return DistributedDataParallel(
        model, device_ids=device_ids, forward_sync_buffers=False, find_unused_parameters=find_unused_parameters
    )


class OpenSeeDTrainer(TrainerBase):
    """Joint-training trainer; the per-step logic lives in `JointStepTrainer` (`self._trainer`)."""

    def __init__(self, cfg, evaluate_function: Callable[[torch.nn.Module, object, str], Mapping] | None = None):
        """
        Args:
            cfg: a frozen openseed config.
            evaluate_function: `f(model, cfg, output_dir) -> results` run every `TEST.EVAL_PERIOD` iterations and
                after training (on every rank); None disables evaluation during training.
        """
        super().__init__()
        check_datasets_registered(cfg.DATASETS.TRAIN, "DATASETS.TRAIN")
        self.cfg = cfg
        self.device = torch.device(cfg.MODEL.DEVICE)
        self.model_without_ddp = self.build_model(cfg)
        self.checkpointer = TrainingCheckpointer(self.model_without_ddp, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        self._initial_weights_loaded = False
        self._prepare_finetuning()
        optimizer = build_optimizer(cfg, self.model_without_ddp)
        model = wrap_for_distributed(self.model_without_ddp, self.device, cfg.MODEL.DDP_FIND_UNUSED_PARAMETERS)
        clip = cfg.SOLVER.CLIP_GRADIENTS
        if clip.ENABLED and clip.CLIP_TYPE != "full_model":
            raise ValueError(f"SOLVER.CLIP_GRADIENTS.CLIP_TYPE={clip.CLIP_TYPE!r}: only 'full_model' is supported")
        self._trainer = JointStepTrainer(
            model,
            None,
            optimizer,
            device=self.device,
            amp_dtype=autocast_dtype(cfg, "SOLVER"),
            clip_max_norm=clip.CLIP_VALUE if clip.ENABLED and clip.CLIP_VALUE > 0 else None,
            clip_norm_type=clip.NORM_TYPE,
        )
        self.scheduler = build_lr_scheduler(cfg, optimizer)
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self._evaluate_function = evaluate_function
        self._rng_states: list | None = None
        self.register_hooks(self.build_hooks())

    @classmethod
    def build_model(cls, cfg) -> torch.nn.Module:
        """The model of `MODEL.META_ARCHITECTURE` on `MODEL.DEVICE` (no weights loaded)."""
        model = build_model(cfg)
        logger.info(f"Model with {sum(p.numel() for p in model.parameters()):,} parameters:\n{model}")
        return model

    def _prepare_finetuning(self) -> None:
        """Freeze what `SOLVER.FINETUNE.MODE` keeps fixed (openseed/engine/finetune.py), before the optimizer is
        built. Adapters wrap the pre-trained layers, so with adapters the initial weights are loaded first."""
        cfg = self.cfg
        adapter_mode = cfg.SOLVER.FINETUNE.MODE == "adapter"
        if adapter_mode or cfg.MODEL.ADAPTER_WEIGHTS:
            self.load_initial_weights()
            self._initial_weights_loaded = True
        if adapter_mode and cfg.MODEL.ADAPTER_WEIGHTS:
            logger.info(count_parameters(self.model_without_ddp, "adapter").describe())  # adapters were loaded
            return
        apply_finetune_config(cfg, self.model_without_ddp)

    @classmethod
    def build_train_loader(cls, cfg, start_iter: int):
        """The joint loader `{dataset_name: list[dict]}` positioned at batch `start_iter`."""
        return build_joint_train_loader(cfg, start_iter=start_iter)

    def build_hooks(self) -> list:
        cfg = self.cfg
        hooks = [
            d2_hooks.IterationTimer(),
            d2_hooks.LRScheduler(),
            PeriodicCheckpointer(self.checkpointer, cfg.SOLVER.CHECKPOINT_PERIOD, self.device),
        ]
        if self._evaluate_function is not None:
            hooks.append(PeriodicEvaluation(cfg.TEST.EVAL_PERIOD, self._evaluate_during_training, self.device))
        hooks.append(ParameterSyncCheck(self.model_without_ddp))
        if comm.is_main_process():
            log_period = cfg.SOLVER.LOG_PERIOD
            hooks.append(d2_hooks.PeriodicWriter(build_writers(cfg, self.max_iter, log_period), period=log_period))
        hooks.append(PreemptionCheckpointer(self.checkpointer, self.device))  # last: the step's metrics are written
        return hooks

    def _evaluate_during_training(self) -> Mapping:
        completed_iterations = min(self.iter + 1, self.max_iter)  # `iter` is max_iter in after_train
        output_dir = os.path.join(self.cfg.OUTPUT_DIR, "eval", f"iter_{completed_iterations:07d}")
        self.model_without_ddp.eval()
        try:
            with torch.no_grad():
                return self._evaluate_function(self.model_without_ddp, self.cfg, output_dir)
        finally:
            self.model_without_ddp.train()

    def resume_or_load(self, resume: bool = True) -> None:
        """Resume from `OUTPUT_DIR/last_checkpoint` if `resume` and it exists, else load the initial weights; then
        build the train loader for the start iteration and restore this rank's RNG state (after the loader, whose
        construction may draw random numbers, exactly as in the uninterrupted run)."""
        if resume and comm.is_main_process():
            self.checkpointer.remove_partial_files()
        if resume and self.checkpointer.has_checkpoint():
            extra = self.checkpointer.load(self.checkpointer.get_checkpoint_file())
            self.start_iter = self.iter + 1
            self._rng_states = extra.get("rng_states")
        elif not self._initial_weights_loaded:
            self.load_initial_weights()
        self._trainer.reset_data_loader(lambda: self.build_train_loader(self.cfg, self.start_iter))
        self._trainer.start_data_iterator()
        if self._rng_states is not None:
            self._restore_rng_states(self._rng_states)

    def load_initial_weights(self) -> None:
        """`MODEL.WEIGHTS` (whole model, strict), then `MODEL.BACKBONE.INIT_WEIGHTS` (ImageNet backbone),
        `MODEL.TEXT.INIT_WEIGHTS` (text encoder only) and `MODEL.ADAPTER_WEIGHTS` (kept as trainable adapters in
        "adapter" mode, else merged into the weights)."""
        if self.cfg.MODEL.WEIGHTS:
            self.checkpointer.load(self.cfg.MODEL.WEIGHTS, checkpointables=[])
        initialise_backbone(self.model_without_ddp, self.cfg)
        initialise_text_encoder(self.model_without_ddp, self.cfg)
        if self.cfg.MODEL.ADAPTER_WEIGHTS:
            load_adapter(self.model_without_ddp, self.cfg.MODEL.ADAPTER_WEIGHTS,
                         merge=self.cfg.SOLVER.FINETUNE.MODE != "adapter")

    def _restore_rng_states(self, rng_states: list) -> None:
        if len(rng_states) != comm.get_world_size():
            logger.warning(
                f"the checkpoint holds RNG states of {len(rng_states)} process(es), this run has "
                f"{comm.get_world_size()}: random streams are not restored, the resumed run is not bit-exact"
            )
            return
        restore_rng_state(rng_states[comm.get_rank()], self.device)

    def train(self) -> None:
        """Train from `start_iter` to `SOLVER.MAX_ITER` (call `resume_or_load` first)."""
        if self._trainer.data_loader is None:
            raise RuntimeError("call resume_or_load() before train(): it builds the data loader")
        try:
            super().train(self.start_iter, self.max_iter)
        finally:
            self._trainer.stop_data_iterator()

    def run_step(self) -> None:
        self._trainer.iter = self.iter
        self._trainer.run_step()

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["_trainer"] = self._trainer.state_dict()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self._trainer.load_state_dict(state_dict["_trainer"])

    @property
    def model(self) -> torch.nn.Module:
        return self._trainer.model

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self._trainer.optimizer

    @property
    def data_loader(self):
        return self._trainer.data_loader
