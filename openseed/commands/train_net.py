"""Train or evaluate OpenSeeD (Detectron2-style command line; also `python -m openseed.commands.train_net`).

    python tools/train_net.py --config-file configs/openseed/swint_decoupled_coco_o365.yaml --num-gpus 8
    python tools/train_net.py --config-file C --resume                    # continue from OUTPUT_DIR/last_checkpoint
    python tools/train_net.py --config-file C --eval-only MODEL.WEIGHTS W  # evaluate DATASETS.TEST
    python tools/train_net.py --config-file configs/tiny/tiny_decoupled.yaml --num-gpus 2 --dist-url auto  # CPU, gloo
    python tools/train_net.py --config-file configs/finetune/synthetic_custom.yaml SOLVER.FINETUNE.MODE adapter

With `SOLVER.FINETUNE.MODE adapter` the adapters are also written to `OUTPUT_DIR/adapter_final.safetensors`, which
`MODEL.WEIGHTS` (the pre-trained model) + `MODEL.ADAPTER_WEIGHTS` (that file) turn into the fine-tuned model.

    torchrun --nproc-per-node 2 tools/train_net.py --config-file C   # or one `srun` task per process under SLURM

`--num-gpus N` starts N processes per machine on `MODEL.DEVICE` (NCCL on CUDA, gloo on CPU); processes started by
torchrun or srun find their rank in the environment (openseed/engine/launch.py). Trailing `KEY VALUE` pairs override
the config; the flags may also follow them. SIGTERM / SIGUSR1 write a checkpoint after the current iteration and exit
with status 75 (openseed/engine/preemption.py; docs/slurm_requeue.sbatch requeues such a job).
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta

import torch
from detectron2.utils import comm

from openseed.checkpoint import ADAPTER_FILENAME, initialise_text_encoder, load_adapter, save_adapter
from openseed.config import setup_cfg
from openseed.data.registration.custom_coco import register_custom_datasets
from openseed.engine import (
    OpenSeeDTrainer,
    TrainingCheckpointer,
    check_datasets_registered,
    default_argument_parser,
    launch,
    setup,
)
from openseed.evaluation import evaluate, paper_model_for, write_summary
from openseed.utils.runtime import tune_cpu_runtime


def evaluate_test_datasets(model: torch.nn.Module, cfg, output_dir: str) -> dict:
    """Evaluate `model` on every dataset of `DATASETS.TEST`, writing results under `output_dir`."""
    return evaluate(model, cfg, list(cfg.DATASETS.TEST), output_dir, force=True)


def main(args) -> dict | None:
    tune_cpu_runtime()  # in every worker process: malloc tuning, denormals flushed (openseed.utils.runtime)
    cfg = setup(args)
    register_custom_datasets(cfg)  # DATASETS.CUSTOM, in every process
    if args.eval_only:
        check_datasets_registered(cfg.DATASETS.TEST, "DATASETS.TEST")
        model = OpenSeeDTrainer.build_model(cfg)
        initialise_text_encoder(model, cfg)  # MODEL.TEXT.INIT_WEIGHTS; a checkpoint loaded next replaces them
        TrainingCheckpointer(model, cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        if cfg.MODEL.ADAPTER_WEIGHTS:
            load_adapter(model, cfg.MODEL.ADAPTER_WEIGHTS, merge=True)
        model.eval()
        output_dir = os.path.join(cfg.OUTPUT_DIR, "inference")
        with torch.no_grad():
            results = evaluate_test_datasets(model, cfg, output_dir)
        if comm.is_main_process():
            summary = write_summary(results, output_dir, paper_model_for(cfg))
            logging.getLogger("openseed").info(f"Evaluation results:\n{summary['markdown']}")
        return results
    evaluate_function = evaluate_test_datasets if cfg.DATASETS.TEST else None
    trainer = OpenSeeDTrainer(cfg, evaluate_function=evaluate_function)
    trainer.resume_or_load(resume=args.resume)
    trainer.train()
    if cfg.SOLVER.FINETUNE.MODE == "adapter" and comm.is_main_process():
        save_adapter(trainer.model_without_ddp, os.path.join(cfg.OUTPUT_DIR, ADAPTER_FILENAME),
                     rank=cfg.SOLVER.FINETUNE.ADAPTER_RANK, alpha=cfg.SOLVER.FINETUNE.ADAPTER_ALPHA)
    return None


def cli(argv: list[str] | None = None) -> None:
    args = default_argument_parser().parse_args(argv)
    cfg = setup_cfg(args.config_file or None, args.opts)
    launch(
        main,
        args.num_gpus,
        device=cfg.MODEL.DEVICE,  # picks the process-group backend
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
        timeout=timedelta(seconds=cfg.DIST_TIMEOUT_S),
    )


if __name__ == "__main__":
    cli()
