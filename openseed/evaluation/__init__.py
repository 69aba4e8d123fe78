"""Zero-shot evaluation (docs/official_behaviours.md §9.5, §10.4–10.6, §13): per-dataset protocols, Detectron2 evaluators, the `evaluate`
entry point used by tools/train_net.py and tools/eval_zeroshot.py, and the summary table.

    from openseed.evaluation import evaluate, write_summary
    results = evaluate(model, cfg, ["ade20k_panoptic_val", "lvis_v1_minival"], "output/eval")
    print(write_summary(results, "output/eval")["markdown"])
"""

from .evaluate import evaluate, evaluate_dataset, results_path
from .evaluators import EvaluatorUnavailable, build_evaluator, check_evaluable
from .protocols import DatasetProtocol, protocol_for
from .summary import markdown_table, paper_model_for, summarize, write_summary

__all__ = [
    "DatasetProtocol",
    "EvaluatorUnavailable",
    "build_evaluator",
    "check_evaluable",
    "evaluate",
    "evaluate_dataset",
    "markdown_table",
    "paper_model_for",
    "protocol_for",
    "results_path",
    "summarize",
    "write_summary",
]
