"""`tools/benchmark.py train`: one joint training step (forward, backward, gradient clipping, AdamW step).

The batch holds, per dataset of `DATASETS.TRAIN` (or the `--datasets` subset; "coco" and "o365" name the COCO and
Objects365 entries, as `bench_official.py train --datasets` does), `--images` synthetic training samples
of `--size`² with `--instances` objects each (masks for task "seg", boxes only for "det"); each dataset's vocabulary
comes from its registered metadata (133 COCO panoptic names, 365 Objects365 names for the paper config), as in
training. Deep supervision and conditioned queries follow the config (both on for the paper model). `--checkpoint`
switches activation checkpointing on for the backbone (`MODEL.SWIN.USE_CHECKPOINT`), the pixel-decoder encoder
(`MODEL.ENCODER.ACTIVATION_CHECKPOINT`) and the text encoder (`MODEL.TEXT.ACTIVATION_CHECKPOINT`): same losses and
gradients, less memory, more time (blocks are recomputed in backward). `--finetune-mode` (repeatable, one row each)
applies a fine-tuning mode of openseed/engine/finetune.py first: frozen parameters get no gradient and no optimizer
state; the row reports the trainable parameters and the optimizer state's size.

Every case runs in a fresh process from the same seeded initial weights and RNG state, so the reported loss of the
first step is comparable across `--checkpoint` settings. Stages: text (class-name embeddings with gradients),
backbone, pixel decoder, decoder, losses (matching + criterion), backward, optimizer (clipping + AdamW), other.
`--amp bfloat16|float16` runs the forward under autocast (`SOLVER.AMP`; float16 adds a gradient scaler), as
`JointStepTrainer` does. The scaler starts at 2^16, so the first float16 steps of a model overflow and the scaler
skips the optimizer step while it backs off: untimed steps run first until it accepts one (at most
`MAX_SCALER_SETTLE_STEPS`, reported as `scaler_settle_steps`), and the row counts timed steps it still skipped.
"""

from __future__ import annotations

import argparse

import torch
from tabulate import tabulate

from openseed.data.train_specs import train_dataset_specs
from openseed.engine.finetune import FINETUNE_MODES, apply_finetune_mode
from openseed.engine.optimizer import build_optimizer, clip_full_model_gradients
from openseed.utils.amp import autocast_dtype

from .common import StageTimer, median, run_isolated, stage_summary, timed_runs
from .eval import DEFAULT_CONFIG, add_common_model_arguments, model_opts, model_stage_hooks, precision_name
from .inputs import build_benchmark_model, synthetic_training_sample

MAX_SCALER_SETTLE_STEPS = 32

STAGE_ORDER = ("text", "backbone", "pixel decoder", "decoder", "losses", "backward", "optimizer", "other")
CHECKPOINT_KEYS = {
    "backbone": "MODEL.SWIN.USE_CHECKPOINT",
    "pixel_decoder": "MODEL.ENCODER.ACTIVATION_CHECKPOINT",
    "text": "MODEL.TEXT.ACTIVATION_CHECKPOINT",
}
DATASET_ALIASES = {"coco": "coco", "o365": "objects365"}  # short name -> prefix of the DATASETS.TRAIN entry


def resolve_datasets(cfg, datasets) -> tuple[str, ...]:
    """Names of DATASETS.TRAIN for `--datasets`: full names, or "coco"/"o365" for the entry starting with
    "coco"/"objects365"; empty: all of DATASETS.TRAIN."""
    resolved = []
    for name in datasets or cfg.DATASETS.TRAIN:
        if name in DATASET_ALIASES and name not in cfg.DATASETS.TRAIN:
            matches = [n for n in cfg.DATASETS.TRAIN if n.startswith(DATASET_ALIASES[name])]
            if len(matches) != 1:
                raise ValueError(f"--datasets {name!r}: expected one DATASETS.TRAIN entry starting with "
                                 f"{DATASET_ALIASES[name]!r}, found {matches} in {list(cfg.DATASETS.TRAIN)}")
            name = matches[0]
        resolved.append(name)
    return tuple(resolved)


def checkpoint_opts(parts) -> list[str]:
    """`KEY VALUE` overrides switching activation checkpointing on for the named parts, off for the others."""
    unknown = sorted(set(parts) - set(CHECKPOINT_KEYS))
    if unknown:
        raise ValueError(f"--checkpoint {unknown}: expected some of {sorted(CHECKPOINT_KEYS)}")
    return [item for part, key in CHECKPOINT_KEYS.items() for item in (key, str(part in parts))]


def joint_batch(cfg, datasets, *, size: int, images: int, instances: int, seed: int) -> dict[str, list[dict]]:
    """{dataset_name: samples} for the named training datasets, with class ids drawn from each one's vocabulary."""
    specs = {spec.name: spec for spec in train_dataset_specs(cfg)}
    unknown = [name for name in datasets if name not in specs]
    if unknown:
        raise ValueError(f"--datasets {unknown} are not in DATASETS.TRAIN {list(specs)}")
    batch = {}
    for d, name in enumerate(datasets):
        num_classes = len(specs[name].vocabulary())
        batch[name] = [synthetic_training_sample(size, num_classes, specs[name].task, instances, seed + 1000 * d + i)
                       for i in range(images)]
    return batch


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of every tensor in the optimizer's per-parameter state (AdamW: two moments per trainable parameter)."""
    return sum(v.numel() * v.element_size() for state in optimizer.state.values() for v in state.values()
               if isinstance(v, torch.Tensor))


def train_case(*, config_file: str, opts: list[str], weights: str, seed: int, size: int, datasets: tuple[str, ...],
               images: int, instances: int, checkpoint: tuple[str, ...], runs: int, warmup: int,
               finetune_mode: str = "full") -> dict:
    """One training-step case (run in a child process by `run_isolated`); see the module docstring."""
    cfg, model = build_benchmark_model(config_file, list(opts) + checkpoint_opts(checkpoint), weights, seed)
    trainable = apply_finetune_mode(model, finetune_mode, rank=cfg.SOLVER.FINETUNE.ADAPTER_RANK,
                                    alpha=cfg.SOLVER.FINETUNE.ADAPTER_ALPHA,
                                    convolutions=cfg.SOLVER.FINETUNE.ADAPTER_CONV)
    model.train()
    optimizer = build_optimizer(cfg, model)
    datasets = resolve_datasets(cfg, datasets)
    batch = joint_batch(cfg, datasets, size=size, images=images, instances=instances, seed=seed)
    clip = cfg.SOLVER.CLIP_GRADIENTS
    amp_dtype = autocast_dtype(cfg, "SOLVER")
    scaler = torch.amp.GradScaler(model.device.type, enabled=amp_dtype == torch.float16)
    timer = StageTimer()
    total_losses, skipped = [], []

    def step():
        scale_before = scaler.get_scale() if scaler.is_enabled() else None
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(model.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            losses = model(batch)
        total = sum(losses.values())
        with timer.stage("backward"):
            scaler.scale(total).backward()
        with timer.stage("optimizer"):
            scaler.unscale_(optimizer)
            if clip.ENABLED:
                clip_full_model_gradients(optimizer, clip.CLIP_VALUE, clip.NORM_TYPE)
            scaler.step(optimizer)
            scaler.update()
        total_losses.append(float(total.detach()))
        skipped.append(scale_before is not None and scaler.get_scale() < scale_before)  # backs off only on inf

    modules, attributes = model_stage_hooks(model)
    modules["losses"] = model.criterion
    torch.manual_seed(seed)
    with timer.instrument(modules, attributes):
        while scaler.is_enabled() and (not skipped or skipped[-1]) and len(skipped) < MAX_SCALER_SETTLE_STEPS:
            step()
        settle_steps = len(skipped)
        measured = timed_runs(step, timer, runs=runs, warmup=warmup)
    measured.update(datasets=list(datasets), size=size, images=images, instances=instances,
                    checkpoint=list(checkpoint), first_loss=total_losses[0], losses=total_losses,
                    precision=precision_name(amp_dtype), finetune_mode=finetune_mode,
                    trainable=trainable.trainable, total_params=trainable.total,
                    optimizer_state_mb=optimizer_state_bytes(optimizer) / 2**20, scaler_settle_steps=settle_steps,
                    skipped_steps=sum(skipped[len(skipped) - runs:]))
    return measured


def run_train_benchmark(*, config_file: str = DEFAULT_CONFIG, opts=(), weights: str = "", seed: int = 0,
                        size: int = 512, datasets=(), images: int = 1, instances: int = 10, checkpoints=((),),
                        runs: int = 5, warmup: int = 1, threads: int = 2, malloc: str = "tuned",
                        finetune_modes=("full",)) -> list[dict]:
    """One row per (fine-tuning mode, activation-checkpointing setting), each measured in a fresh process."""
    rows = []
    for finetune_mode in finetune_modes:
        for checkpoint in checkpoints:
            kwargs = dict(config_file=config_file, opts=list(opts), weights=weights, seed=seed, size=size,
                          datasets=tuple(datasets), images=images, instances=instances, checkpoint=tuple(checkpoint),
                          runs=runs, warmup=warmup, finetune_mode=finetune_mode)
            row = run_isolated(train_case, kwargs, threads=threads, malloc=malloc)
            row.setdefault("checkpoint", list(checkpoint))
            row.setdefault("finetune_mode", finetune_mode)
            rows.append(row)
    return rows


def format_train_rows(rows: list[dict]) -> str:
    headers = ["datasets × images", "size", "fine-tuning", "trainable", "optimizer state MB", "checkpointing",
               "precision", "median s", "min–max s", "CPU s", "peak RSS GB",
               "threads / malloc", "load 1m", "first loss", "stages: median wall s", "stages: median CPU s"]
    table = []
    for r in rows:
        checkpointing = "+".join(r["checkpoint"]) or "off"
        if "error" in r:
            table.append(["", "", r["finetune_mode"], "", "", checkpointing, "", r["error"], "", "", "", "", "", "",
                          "", ""])
            continue
        table.append([
            f"{' + '.join(r['datasets'])} × {r['images']}", f"{r['size']}²", r["finetune_mode"],
            f"{r['trainable']:,} / {r['total_params']:,}", f"{r['optimizer_state_mb']:.2f}", checkpointing,
            precision_cell(r),
            f"{median(r['wall_s']):.2f}", f"{min(r['wall_s']):.2f}–{max(r['wall_s']):.2f}",
            f"{median(r['cpu_s']):.2f}", f"{r['peak_rss_mb'] / 1024:.2f}", f"{r['threads']} / {r['malloc']}",
            f"{r['load_before']:.1f}→{r['load_after']:.1f}", f"{r['first_loss']:.6f}",
            stage_summary(r["stages"], STAGE_ORDER),
            stage_summary(r["stage_cpu"], STAGE_ORDER),
        ])
    return tabulate(table, headers=headers, tablefmt="github", disable_numparse=True)


def precision_cell(row: dict) -> str:
    """"float32", or for a gradient-scaled float16 row "float16 (settled in S, K/N skipped)": S untimed steps until the
    scaler accepted one, K of the N timed steps whose optimizer step it skipped."""
    if not row.get("scaler_settle_steps"):
        return row["precision"]
    return (f"{row['precision']} (settled in {row['scaler_settle_steps']}, "
            f"{row['skipped_steps']}/{len(row['wall_s'])} skipped)")


def _parse_checkpoint(text: str) -> tuple[str, ...]:
    parts = tuple(p for p in text.split(",") if p and p != "none")
    try:
        checkpoint_opts(parts)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error
    return parts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the `train` subcommand; sets `func`."""
    parser.add_argument("--size", type=int, default=512, help="square training canvas")
    parser.add_argument("--datasets", nargs="+", default=[],
                        help="subset of DATASETS.TRAIN, full names or coco / o365 (default: all)")
    parser.add_argument("--images", type=int, default=1, help="images per dataset in the batch")
    parser.add_argument("--instances", type=int, default=10, help="objects per image")
    parser.add_argument("--checkpoint", type=_parse_checkpoint, action="append", default=None,
                        help="activation checkpointing, comma-separated parts of backbone,pixel_decoder,text or "
                             "'none'; repeatable (one row each); default none")
    parser.add_argument("--finetune-mode", choices=FINETUNE_MODES, action="append", default=None,
                        help="fine-tuning mode (SOLVER.FINETUNE.MODE; repeatable, one row each); default full")
    add_common_model_arguments(parser, runs=5, warmup=1)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> list[dict]:
    rows = run_train_benchmark(config_file=args.config_file, opts=model_opts(args), weights=args.weights,
                               seed=args.seed, size=args.size, datasets=tuple(args.datasets), images=args.images,
                               instances=args.instances, checkpoints=tuple(args.checkpoint or ((),)),
                               runs=args.runs, warmup=args.warmup, threads=args.threads, malloc=args.malloc,
                               finetune_modes=tuple(args.finetune_mode or ("full",)))
    print(format_train_rows(rows))
    return rows
