"""Data: dataset registration (real and synthetic sets, custom COCO jsons), mappers and the joint training loader.

Importing this package registers every built-in dataset name and the synthetic sets under
`$DETECTRON2_DATASETS/synthetic` (and the ablation benchmark's under `synthetic_ablation`, prefix `synabl`); custom COCO-format jsons are registered with
`registration.custom_coco.register_custom_datasets(cfg)` (entries of `DATASETS.CUSTOM`).
"""

from .joint_loader import build_joint_train_loader
from .mappers import MAPPERS, BadSampleError, build_mapper
from .registration import builtin as _builtin_registration  # noqa: F401  (registers every real dataset)
from .registration.synthetic import register_synthetic_datasets
from .synthetic import ensure_synthetic_datasets

register_synthetic_datasets()
register_synthetic_datasets(family="ablation")

__all__ = ["MAPPERS", "BadSampleError", "build_joint_train_loader", "build_mapper", "ensure_synthetic_datasets",
           "register_synthetic_datasets"]
