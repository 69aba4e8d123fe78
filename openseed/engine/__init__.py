"""Training engine: trainer, optimizer rules, checkpointing, hooks, writers, launch and command-line setup."""

from openseed.engine.checkpointer import TrainingCheckpointer
from openseed.engine.defaults import default_argument_parser, setup
from openseed.engine.launch import launch
from openseed.engine.optimizer import ParamRule, build_optimizer, param_rules, param_rules_from_config
from openseed.engine.trainer import OpenSeeDTrainer, check_datasets_registered

__all__ = [
    "OpenSeeDTrainer",
    "ParamRule",
    "TrainingCheckpointer",
    "build_optimizer",
    "check_datasets_registered",
    "default_argument_parser",
    "launch",
    "param_rules",
    "param_rules_from_config",
    "setup",
]
