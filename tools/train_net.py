#!/usr/bin/env python
"""Train or evaluate OpenSeeD: the command line of `openseed.commands.train_net` (its docstring lists the usage).

    python tools/train_net.py --config-file configs/openseed/swint_decoupled_coco_o365.yaml --num-gpus 8
"""

from openseed.commands.train_net import cli

if __name__ == "__main__":
    cli()
