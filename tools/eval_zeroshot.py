#!/usr/bin/env python
"""Zero-shot evaluation: the command line of `openseed.commands.eval_zeroshot` (its docstring lists the usage).

    python tools/eval_zeroshot.py --config-file C --weights W --suite ade20k lvis odinw13 --output output/zeroshot
"""

from openseed.commands.eval_zeroshot import cli

if __name__ == "__main__":
    cli()
