"""Register every real dataset under `$DETECTRON2_DATASETS` (default `datasets`); imported by `openseed.data`.

Names follow Detectron2 and the official configs (docs/official_behaviours.md §10.5); where Detectron2 registers the same name (COCO,
LVIS, Cityscapes, ADE20K semantic) our registration replaces it so every dataset carries the same metadata keys
(`tasks`, `expected_num_classes`, `vocabulary_source`, see `common.py`). Files are only read when a dataset is used;
the expected layout of every dataset is in `datasets/README.md`.
"""

from __future__ import annotations

from ..paths import datasets_root
from .ade20k import register_ade20k
from .bdd import register_bdd
from .cityscapes import register_cityscapes
from .coco import register_coco
from .common import EXPECTED_NUM_CLASSES, resolve_metadata
from .lvis import register_lvis
from .objects365 import register_objects365
from .odinw import register_odinw
from .pascal_context import register_pascal_context
from .scannet import register_scannet
from .seginw import register_seginw
from .suites import SUITE_NAMES, suite_datasets
from .sunrgbd import register_sunrgbd

_REGISTER_FUNCTIONS = (
    register_coco,
    register_objects365,
    register_ade20k,
    register_lvis,
    register_odinw,
    register_seginw,
    register_cityscapes,
    register_bdd,
    register_scannet,
    register_sunrgbd,
    register_pascal_context,
)


def register_all_builtin(root: str | None = None) -> tuple[str, ...]:
    """(Re-)register every real dataset with files under `root` (default `datasets_root()`); returns their names."""
    root = datasets_root() if root is None else root
    for register_function in _REGISTER_FUNCTIONS:
        register_function(root)
    return builtin_dataset_names()


def builtin_dataset_names() -> tuple[str, ...]:
    """Every dataset name registered by this module."""
    return tuple(EXPECTED_NUM_CLASSES)


register_all_builtin()

__all__ = ["SUITE_NAMES", "builtin_dataset_names", "register_all_builtin", "resolve_metadata", "suite_datasets"]
