"""Synthetic datasets (coloured shapes on textured backgrounds) in real COCO / COCO-panoptic / LVIS formats.

`python -m openseed.data.synthetic --root datasets/synthetic` writes them; `ensure_synthetic_datasets(root)` does so
only when they are missing. `openseed.data.registration.synthetic` registers them by name. See `classes.py` for the
vocabulary and `layout.py` for the file layout.
"""

from .classes import ALL_THINGS, BOX_THINGS, PANOPTIC_THINGS, STUFF_NAMES, ZEROSHOT_THINGS, ThingClass
from .generate import (
    default_synthetic_root,
    ensure_synthetic_datasets,
    generate_synthetic_datasets,
    read_manifest,
)
from .layout import SyntheticSet, set_paths, synthetic_sets

__all__ = [
    "ALL_THINGS",
    "BOX_THINGS",
    "PANOPTIC_THINGS",
    "STUFF_NAMES",
    "ZEROSHOT_THINGS",
    "SyntheticSet",
    "ThingClass",
    "default_synthetic_root",
    "ensure_synthetic_datasets",
    "generate_synthetic_datasets",
    "read_manifest",
    "set_paths",
    "synthetic_sets",
]
