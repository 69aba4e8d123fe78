"""The training and evaluation command lines as library functions: `train_net.cli(argv)` and
`eval_zeroshot.cli(argv)`, behind `tools/train_net.py` / `tools/eval_zeroshot.py` and run by the demo pipeline as
`python -m openseed.commands.<name>` (the installed package needs no script it does not ship).

The top layer with `openseed.demo` and `openseed.benchmarks`: it may import every other part of `openseed`.
"""
