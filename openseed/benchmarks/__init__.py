"""Benchmarks behind `tools/benchmark.py`: one module per subcommand (`eval`, `text`, `train`, `data`, `peak`), each
with `add_arguments(parser)`; `common` (isolated runs, peak memory, stage timers) and `inputs` (benchmark models,
vocabularies and synthetic inputs, also used by tests and `tools/export_onnx.py`).

The top layer of the package: it may import every other part of `openseed`, and nothing in `openseed` imports it.
"""
