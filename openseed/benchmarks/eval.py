"""`tools/benchmark.py eval`: one image through the eval forward (`model(inputs, vocabulary, task)`), per stage.

Each `--vocab` is one case in its own process (peak RSS per case): build the model (seeded random init, or
`--weights`), embed the vocabulary once (cached: in memory, and on disk under `--text-cache`), then time `--runs`
forwards of a deterministic synthetic image of `--size H W` after `--warmup` untimed ones; results are requested at
`--output-size` (default: the input size; a different size adds the bicubic resize of every mask, as when COCO
images are evaluated at their original size). `--image-size H W` instead feeds a synthetic photo of that size through
`Predictor` (test resize, post-processing at `--postprocess-resolution`, results at the photo's size): the timed
forward then includes the resize of the photo. The vocabulary's embedding is set-up, as an evaluation with a warm
disk cache would have it: its time and peak RSS are reported apart ("text setup"), and the peak-RSS count restarts
after it, so "peak RSS" is that of the forwards with the cached vocabulary. The stage breakdown is
exclusive wall time: text (the cache look-up), backbone, pixel decoder, decoder, post-processing, other
(normalisation, padding, glue). With random weights no panoptic segment survives the overlap test; post-processing
time is still dominated by the mask resizing every requested task needs. `--amp bfloat16` runs the forwards under
autocast (`TEST.AMP`; the vocabulary embedding stays float32). `--backend onnxruntime` runs the network from an ONNX
export instead (`openseed.export`): the child exports the graph for the case's vocabulary (set-up, reported in the
"text setup" column together with the embedding), drops the PyTorch model, then times ONNX Runtime ("network" stage)
and the same post-processing. `--count-flops` adds the FLOPs of the network (backbone, pixel decoder, decoder and
heads; matmuls and convolutions as `torch.utils.flop_counter` counts them) on the case's image, from one more
untimed forward: the floor of the network's time is FLOPs / the machine's peak (`tools/benchmark.py peak`).
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from pathlib import Path

import torch
from tabulate import tabulate

from openseed.modeling import meta_arch
from openseed.modeling.postprocessing import RESOLUTIONS, TASKS
from openseed.predictor import Predictor
from openseed.utils.amp import autocast_dtype
from openseed.utils.malloc import release_free_heap

from .common import (
    MALLOC_SETTINGS,
    StageTimer,
    median,
    peak_rss_mb,
    reset_peak_rss,
    run_isolated,
    stage_summary,
    timed_runs,
)
from .inputs import VOCABULARY_SPECS, benchmark_vocabulary, build_benchmark_model, synthetic_image

DEFAULT_CONFIG = "configs/openseed/swint_decoupled_coco_o365.yaml"
STAGE_ORDER = ("text", "backbone", "pixel decoder", "decoder", "network", "post-processing", "other")
PRECISIONS = ("float32", "bfloat16", "float16")
BACKENDS = ("pytorch", "onnxruntime")


def model_stage_hooks(model) -> tuple[dict, dict]:
    """({stage: module}, {stage: (owner, attribute)}) of an `OpenSeeD` model, for `StageTimer.instrument`."""
    modules = {"backbone": model.backbone, "decoder": model.sem_seg_head.predictor}
    attributes = {
        "pixel decoder": (model.sem_seg_head.pixel_decoder, "forward_features"),
        "text": (model.lang_encoder, "embed_vocabulary"),
        "post-processing": (meta_arch, "postprocess"),
    }
    return modules, attributes


def _result_counts(result: dict) -> dict:
    counts = {}
    if "instances" in result:
        counts["instances"] = len(result["instances"])
    if "panoptic_seg" in result:
        counts["segments"] = len(result["panoptic_seg"][1])
    return counts


def eval_case(*, config_file: str, opts: list[str], weights: str, seed: int, size: tuple[int, int], vocab: str,
              tasks: tuple[str, ...], runs: int, warmup: int, text_cache: str,
              output_size: tuple[int, int] | None = None, image_size: tuple[int, int] | None = None,
              postprocess_resolution: str = "network", backend: str = "pytorch",
              count_flops: bool = False) -> dict:
    """One eval case (run in a child process by `run_isolated`); see the module docstring."""
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r}: expected one of {BACKENDS}")
    opts = list(opts) + (["MODEL.TEXT.CACHE_DIR", text_cache] if text_cache else [])
    vocabulary = benchmark_vocabulary(vocab)
    if image_size:
        if backend != "pytorch":
            raise ValueError("--image-size runs the PyTorch Predictor; drop --backend")
        torch.manual_seed(seed)
        predictor = Predictor(config_file, weights, opts, postprocess_resolution=postprocess_resolution)
        cfg, model = predictor.cfg, predictor.model
        photo = synthetic_image(*image_size, seed).permute(1, 2, 0).contiguous().numpy()
        inputs = [predictor.model_input(photo)]
        height, width = inputs[0]["image"].shape[-2:]
        out_height, out_width = image_size

        def forward():
            return [predictor(photo, vocabulary, task=tasks)]
    else:
        cfg, model = build_benchmark_model(config_file, opts, weights, seed)
        height, width = size
        out_height, out_width = output_size or size
        inputs = [{"image": synthetic_image(height, width, seed), "height": out_height, "width": out_width}]

        def forward():  # `model` is looked up at call time: the ONNX Runtime model once exported below
            return model(inputs, vocabulary=vocabulary, task=tasks)
    amp_dtype = autocast_dtype(cfg, "TEST")
    start = time.perf_counter()
    with torch.no_grad():
        model.lang_encoder.embed_vocabulary(vocabulary, train=False)
    export_dir = None
    if backend == "onnxruntime":
        if amp_dtype is not None:
            raise ValueError("--backend onnxruntime runs the float32 export; drop --amp")
        export_dir = tempfile.TemporaryDirectory(prefix="openseed_onnx_")
        model = _onnx_runtime_model(cfg, model, vocabulary, Path(export_dir.name) / "network.onnx", size)
        gc.collect()
    text_setup_s = time.perf_counter() - start
    gflop = network_gflop(model, inputs, vocabulary) if count_flops and not export_dir else None
    text_setup_peak_rss_mb = peak_rss_mb()
    release_free_heap()  # what the set-up (and the FLOP count's forward) freed is not the evaluation's memory
    if not reset_peak_rss():
        text_setup_peak_rss_mb = float("nan")  # the forward's peak below includes the set-up
    outputs = []

    def step():
        outputs.clear()  # an evaluation loop hands each result on and drops it before the next image
        with torch.no_grad(), torch.autocast("cpu" if export_dir else model.device.type, dtype=amp_dtype,
                                             enabled=amp_dtype is not None):
            outputs.extend(forward())

    timer = StageTimer()
    modules, attributes = onnx_stage_hooks(model) if export_dir else model_stage_hooks(model)
    with timer.instrument(modules, attributes):
        measured = timed_runs(step, timer, runs=runs, warmup=warmup)
    if export_dir:
        export_dir.cleanup()
    measured.update(vocab=vocab, num_classes=len(vocabulary), size=[height, width],
                    output_size=[out_height, out_width], tasks=list(tasks), photo=bool(image_size),
                    postprocess_resolution=postprocess_resolution if image_size else "output",
                    text_setup_s=text_setup_s, text_setup_peak_rss_mb=text_setup_peak_rss_mb,
                    counts=_result_counts(outputs[0]), precision=precision_name(amp_dtype), backend=backend,
                    network_gflop=gflop)
    return measured


def network_gflop(model, inputs: list[dict], vocabulary) -> float:
    """GFLOP of the network (no post-processing) on `inputs`, as `torch.utils.flop_counter` counts them."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad():
        images = model.preprocess(inputs)
        text = model.lang_encoder.embed_vocabulary(vocabulary, train=False)
        with FlopCounterMode(display=False) as counter:
            model.sem_seg_head(model.backbone(images.tensor), text, task="seg")
    return counter.get_total_flops() / 1e9


def _onnx_runtime_model(cfg, model, vocabulary, path: Path, size: tuple[int, int]):
    """Export `model` for `vocabulary` to `path`, traced at the padded `size` of the case (the graph accepts any
    size; README "ONNX Runtime"), and load it in ONNX Runtime (threads: torch's)."""
    from openseed.export import OnnxRuntimeModel, export_onnx
    from openseed.modeling.postprocessing import PostprocessSettings

    step = model.size_divisibility or 32
    export_onnx(model, vocabulary, path, sample_size=tuple(-(-side // step) * step for side in size))
    return OnnxRuntimeModel(path, PostprocessSettings.from_config(cfg))


def onnx_stage_hooks(runtime) -> tuple[dict, dict]:
    """({}, {stage: (owner, attribute)}) of an `OnnxRuntimeModel`: the ONNX Runtime run and the post-processing."""
    from openseed.export import onnx_runtime

    return {}, {"network": (runtime, "network_outputs"), "post-processing": (onnx_runtime, "postprocess")}


def run_eval_benchmark(*, config_file: str = DEFAULT_CONFIG, opts=(), weights: str = "", seed: int = 0,
                       size=(800, 1216), vocabs=("coco143",), tasks=("panoptic", "instance", "semantic"),
                       runs: int = 5, warmup: int = 1, threads: int = 2, text_cache: str = "",
                       malloc: str = "tuned", output_size=None, image_size=None,
                       postprocess_resolution: str = "network", backend: str = "pytorch",
                       count_flops: bool = False) -> list[dict]:
    """One row per vocabulary, each measured in a fresh process."""
    rows = []
    for vocab in vocabs:
        kwargs = dict(config_file=config_file, opts=list(opts), weights=weights, seed=seed, size=tuple(size),
                      vocab=vocab, tasks=tuple(tasks), runs=runs, warmup=warmup, text_cache=text_cache,
                      output_size=tuple(output_size) if output_size else None,
                      image_size=tuple(image_size) if image_size else None,
                      postprocess_resolution=postprocess_resolution, backend=backend, count_flops=count_flops)
        row = run_isolated(eval_case, kwargs, threads=threads, malloc=malloc)
        row.setdefault("vocab", vocab)
        rows.append(row)
    return rows


def format_eval_rows(rows: list[dict]) -> str:
    headers = ["vocab (K)", "size", "tasks", "precision", "median s", "min–max s", "CPU s", "peak RSS GB", "threads / malloc",
               "load 1m", "stages: median wall s", "stages: median CPU s", "outputs", "text setup s / GB"]
    table = []
    for r in rows:
        if "error" in r:
            table.append([r["vocab"], "", "", "", r["error"], "", "", "", "", "", "", "", "", ""])
            continue
        table.append([
            f"{r['vocab']} ({r['num_classes']})", _size_text(r), "+".join(r["tasks"]),
            r["precision"] if r["backend"] == "pytorch" else f"{r['precision']} ({r['backend']})",
            f"{median(r['wall_s']):.2f}", f"{min(r['wall_s']):.2f}–{max(r['wall_s']):.2f}",
            f"{median(r['cpu_s']):.2f}", f"{r['peak_rss_mb'] / 1024:.2f}", f"{r['threads']} / {r['malloc']}",
            f"{r['load_before']:.1f}→{r['load_after']:.1f}", stage_summary(r["stages"], STAGE_ORDER),
            stage_summary(r["stage_cpu"], STAGE_ORDER),
            ", ".join(f"{k} {v}" for k, v in r["counts"].items()),
            f"{r['text_setup_s']:.1f} / {r['text_setup_peak_rss_mb'] / 1024:.2f}",
        ])
    return tabulate(table, headers=headers, tablefmt="github", disable_numparse=True)


def _size_text(row: dict) -> str:
    network, output = "×".join(map(str, row["size"])), "×".join(map(str, row["output_size"]))
    if row.get("photo"):
        return f"photo {output} (network {network}, post-processing at {row['postprocess_resolution']})"
    return network if output == network else f"{network} → {output}"


def add_common_model_arguments(parser: argparse.ArgumentParser, *, runs: int, warmup: int) -> None:
    """Options shared by the model benchmarks (eval, text, train)."""
    parser.add_argument("--config-file", default=DEFAULT_CONFIG, help="model config (YAML)")
    parser.add_argument("--weights", default="", help="checkpoint to load (default: seeded random init)")
    parser.add_argument("--runs", type=int, default=runs, help="timed runs (the median is reported)")
    parser.add_argument("--warmup", type=int, default=warmup, help="untimed runs before timing")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="MODEL.DEVICE (the targets of issue 9 are CPU figures)")
    parser.add_argument("--malloc", choices=MALLOC_SETTINGS, default="tuned",
                        help="tuned: the malloc settings the tools apply (openseed.utils.malloc); glibc: defaults")
    parser.add_argument("--amp", choices=PRECISIONS, default="float32",
                        help="autocast dtype (TEST.AMP for eval, SOLVER.AMP for train); CPU: bfloat16 only")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="config overrides: KEY VALUE ...")


def amp_opts(precision: str) -> list[str]:
    """`KEY VALUE` overrides of `TEST.AMP` and `SOLVER.AMP` for a `--amp` precision ("float32": AMP off)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {PRECISIONS}")
    enabled, dtype = (False, "float16") if precision == "float32" else (True, precision)
    return [item for section in ("TEST", "SOLVER")
            for item in (f"{section}.AMP.ENABLED", str(enabled), f"{section}.AMP.DTYPE", dtype)]


def precision_name(amp_dtype: torch.dtype | None) -> str:
    return "float32" if amp_dtype is None else str(amp_dtype).removeprefix("torch.")


def model_opts(args: argparse.Namespace) -> list[str]:
    """Config overrides of the model benchmarks: MODEL.DEVICE from `--device`, AMP from `--amp`, then the
    command-line `KEY VALUE`s."""
    return ["MODEL.DEVICE", args.device, *amp_opts(args.amp), *args.opts]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the `eval` subcommand; sets `func`."""
    parser.add_argument("--size", type=int, nargs=2, default=(800, 1216), metavar=("H", "W"), help="input image size")
    parser.add_argument("--output-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help="size of the results (dataset height/width); default: the input size")
    parser.add_argument("--image-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help="a photo of this size through `Predictor` (test resize, results at the photo's size); "
                             "overrides --size/--output-size")
    parser.add_argument("--postprocess-resolution", choices=RESOLUTIONS, default="network",
                        help="with --image-size: the Predictor's post-processing resolution")
    parser.add_argument("--vocab", action="append", default=None,
                        help=f"vocabulary, repeatable (one row each): {', '.join(VOCABULARY_SPECS)} or a count N "
                             "(first N LVIS names); default coco143")
    parser.add_argument("--tasks", nargs="+", default=["panoptic", "instance", "semantic"], choices=TASKS,
                        help="outputs to compute")
    parser.add_argument("--text-cache", default="output/benchmark/text_cache",
                        help="on-disk text-embedding cache (MODEL.TEXT.CACHE_DIR); empty: memory only")
    parser.add_argument("--backend", choices=BACKENDS, default="pytorch",
                        help="onnxruntime: export the network for the vocabulary, run it in ONNX Runtime (CPU)")
    parser.add_argument("--count-flops", action="store_true", help="also count the network's FLOPs (one forward)")
    add_common_model_arguments(parser, runs=5, warmup=1)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> list[dict]:
    rows = run_eval_benchmark(config_file=args.config_file, opts=model_opts(args), weights=args.weights, seed=args.seed,
                              size=args.size, vocabs=tuple(args.vocab or ("coco143",)), tasks=tuple(args.tasks),
                              runs=args.runs, warmup=args.warmup, threads=args.threads, text_cache=args.text_cache,
                              malloc=args.malloc, output_size=args.output_size, image_size=args.image_size,
                              postprocess_resolution=args.postprocess_resolution, backend=args.backend,
                              count_flops=args.count_flops)
    print(format_eval_rows(rows))
    return rows
