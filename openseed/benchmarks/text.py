"""`tools/benchmark.py text`: text embeddings of a vocabulary, as evaluation or as one training step computes them.

`--mode eval`: the prompt ensemble (`MODEL.TEXT.EVAL_PROMPT_ENSEMBLE`: every template of every class, no gradients),
recomputed in every run (the embedding cache is cleared first). `--verify-names N` also encodes the first N classes
the straightforward way — every prompt over the full context length, pooled at its end-of-text token — and reports
the largest absolute difference to the fast path. `--mode train`: one random template per class, forward and
backward of the embeddings' sum (the text part of a training step).

Only the `LanguageEncoder` of the config is built (seeded random init, or `--weights`: a full or language-only
checkpoint, read as `MODEL.TEXT.INIT_WEIGHTS`).
"""

from __future__ import annotations

import argparse

import torch
from tabulate import tabulate

from openseed.checkpoint import load_text_encoder_weights
from openseed.config import setup_cfg
from openseed.modeling.text import LanguageEncoder
from openseed.utils.random_draws import TrainingDraws

from .common import StageTimer, median, run_isolated, timed_runs
from .eval import DEFAULT_CONFIG, add_common_model_arguments, model_opts
from .inputs import VOCABULARY_SPECS, benchmark_vocabulary


@torch.no_grad()
def full_context_embeddings(encoder: LanguageEncoder, names) -> torch.Tensor:
    """Reference prompt ensemble K×D: each prompt through every position of the context (`hidden_states`), the state
    at its largest token id (end of text), projected and L2-normalised; mean per class, renormalised. CLIP-style
    encoders only (they expose `hidden_states`)."""
    if not hasattr(encoder.lang_encoder, "hidden_states"):
        raise ValueError(f"--verify-names needs the CLIP text encoder (MODEL.TEXT.ENCODER 'clip'), got "
                         f"{type(encoder.lang_encoder).__name__}")
    prompts, class_ids = [], []
    for class_id, name in enumerate(names):
        for text in encoder._eval_class_texts(name):
            prompts.extend(template.format(text) for template in encoder.eval_templates)
            class_ids.extend([class_id] * len(encoder.eval_templates))
    input_ids, attention_mask = encoder.tokenizer(prompts)
    pooled = []
    for start in range(0, len(prompts), 256):
        ids, mask = input_ids[start : start + 256], attention_mask[start : start + 256]
        hidden = encoder.lang_encoder.hidden_states(ids, mask)
        pooled.append(hidden[torch.arange(len(ids)), ids.argmax(dim=-1)])
    embeddings = torch.cat(pooled) @ encoder.lang_proj
    embeddings = embeddings / (embeddings.norm(dim=-1, keepdim=True) + 1e-7)
    class_ids = torch.tensor(class_ids)
    sums = embeddings.new_zeros(len(names), embeddings.shape[1]).index_add_(0, class_ids, embeddings)
    means = sums / torch.bincount(class_ids, minlength=len(names)).unsqueeze(1)
    return means / means.norm(dim=-1, keepdim=True)


def text_case(*, config_file: str, opts: list[str], weights: str, seed: int, vocab: str, mode: str,
              verify_names: int, runs: int, warmup: int) -> dict:
    """One text case (run in a child process by `run_isolated`); see the module docstring."""
    opts = list(opts) + ["MODEL.TEXT.CACHE_DIR", ""] + (["MODEL.TEXT.INIT_WEIGHTS", weights] if weights else [])
    cfg = setup_cfg(config_file, opts)
    torch.manual_seed(seed)
    encoder = LanguageEncoder(cfg)
    if weights:
        load_text_encoder_weights(encoder, weights)
    vocabulary = benchmark_vocabulary(vocab)
    encoder.train(mode == "train")
    draws = TrainingDraws(torch.Generator().manual_seed(seed))
    timer = StageTimer()

    def step():
        if mode == "train":
            encoder.zero_grad(set_to_none=True)
            with timer.stage("forward"):
                embeddings = encoder.embed_vocabulary(vocabulary, train=True, draws=draws)
            with timer.stage("backward"):
                embeddings.sum().backward()
        else:
            encoder.clear_cache()
            with timer.stage("forward"):
                encoder.embed_vocabulary(vocabulary, train=False)

    measured = timed_runs(step, timer, runs=runs, warmup=warmup)
    templates = len(encoder.eval_templates) if mode == "eval" else 1
    measured.update(vocab=vocab, num_classes=len(vocabulary), mode=mode, templates=templates,
                    context_length=cfg.MODEL.TEXT.CONTEXT_LENGTH)
    if verify_names:
        names = vocabulary.names[:verify_names]
        encoder.eval()
        fast = encoder.embed_names(names, train=False)
        measured["verify"] = {"names": len(names),
                              "max_abs_diff": float((fast - full_context_embeddings(encoder, names)).abs().max())}
    return measured


def run_text_benchmark(*, config_file: str = DEFAULT_CONFIG, opts=(), weights: str = "", seed: int = 0,
                       vocabs=("coco143",), mode: str = "eval", verify_names: int = 0, runs: int = 5,
                       warmup: int = 1, threads: int = 2, malloc: str = "tuned") -> list[dict]:
    """One row per vocabulary, each measured in a fresh process."""
    rows = []
    for vocab in vocabs:
        kwargs = dict(config_file=config_file, opts=list(opts), weights=weights, seed=seed, vocab=vocab, mode=mode,
                      verify_names=verify_names, runs=runs, warmup=warmup)
        row = run_isolated(text_case, kwargs, threads=threads, malloc=malloc)
        row.setdefault("vocab", vocab)
        rows.append(row)
    return rows


def format_text_rows(rows: list[dict]) -> str:
    headers = ["vocab (K)", "mode", "templates", "median s", "min–max s", "CPU s", "peak RSS GB", "threads / malloc",
               "load 1m", "forward / backward s", "full-context check"]
    table = []
    for r in rows:
        if "error" in r:
            table.append([r["vocab"], "", "", r["error"], "", "", "", "", "", "", ""])
            continue
        stages = " / ".join(f"{median(r['stages'][n]):.2f}" for n in ("forward", "backward") if n in r["stages"])
        verify = r.get("verify")
        check = f"{verify['names']} names: max |Δ| {verify['max_abs_diff']:.1e}" if verify else "not run"
        table.append([
            f"{r['vocab']} ({r['num_classes']})", r["mode"], r["templates"], f"{median(r['wall_s']):.2f}",
            f"{min(r['wall_s']):.2f}–{max(r['wall_s']):.2f}", f"{median(r['cpu_s']):.2f}",
            f"{r['peak_rss_mb'] / 1024:.2f}", f"{r['threads']} / {r['malloc']}",
            f"{r['load_before']:.1f}→{r['load_after']:.1f}", stages, check,
        ])
    return tabulate(table, headers=headers, tablefmt="github", disable_numparse=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the `text` subcommand; sets `func`."""
    parser.add_argument("--vocab", action="append", default=None,
                        help=f"vocabulary, repeatable (one row each): {', '.join(VOCABULARY_SPECS)} or a count N "
                             "(first N LVIS names); default coco143")
    parser.add_argument("--mode", choices=("eval", "train"), default="eval",
                        help="eval: prompt ensemble, no gradients; train: one template per class, forward + backward")
    parser.add_argument("--verify-names", type=int, default=0,
                        help="compare the first N classes with the full-context computation (0: skip)")
    add_common_model_arguments(parser, runs=5, warmup=1)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> list[dict]:
    rows = run_text_benchmark(config_file=args.config_file, opts=model_opts(args), weights=args.weights, seed=args.seed,
                              vocabs=tuple(args.vocab or ("coco143",)), mode=args.mode,
                              verify_names=args.verify_names, runs=args.runs, warmup=args.warmup,
                              threads=args.threads, malloc=args.malloc)
    print(format_text_rows(rows))
    return rows
