"""Evaluation suites: a suite name -> the registered dataset names it evaluates (docs/official_behaviours.md §10.6, §13).

`suite_datasets("odinw13")` gives the 13 `odinw13_*_val` names; "zeroshot" is the paper's Table 2 (ADE20K,
Cityscapes, LVIS, BDD, ScanNet, SUN RGB-D); "synthetic" is every synthetic evaluation set (`synthetic.py`).
Per-dataset metrics follow each dataset's metadata `tasks`.
"""

from __future__ import annotations

from ..synthetic.layout import synthetic_sets
from .odinw import odinw_dataset_names
from .seginw import seginw_dataset_names

_FIXED_SUITES: dict[str, tuple[str, ...]] = {
    "coco": ("coco_2017_val_panoptic_with_sem_seg",),
    "ade20k": ("ade20k_panoptic_val",),
    "ade20k_full": ("ade20k_full_sem_seg_val",),
    "lvis": ("lvis_v1_minival",),
    "cityscapes": ("cityscapes_fine_panoptic_val", "cityscapes_fine_instance_seg_val"),
    "bdd": ("bdd10k_40_panoptic_val", "bdd10k_val_sem_seg"),
    "scannet": ("scannet_21_panoptic_val", "scannet_21_val_seg", "scannet_41_val_seg"),
    "sunrgbd": ("sunrgbd_37_val_seg",),
    "pascal_context": ("pascal_context_59_sem_seg_val", "pascal_context_459_sem_seg_val"),
    "objects365": ("objects365_v2_val",),
}
_ZEROSHOT = ("ade20k", "cityscapes", "lvis", "bdd", "scannet", "sunrgbd")
SUITE_NAMES = tuple(_FIXED_SUITES) + ("odinw13", "odinw35", "seginw", "zeroshot", "synthetic")


def synthetic_eval_dataset_names(prefix: str = "synthetic") -> tuple[str, ...]:
    """The synthetic validation sets as registered by `register_synthetic_datasets(prefix=prefix)`."""
    names = []
    for spec, _count in synthetic_sets():
        if spec.split == "val":
            names.append(f"{prefix}_{spec.key}")
            if spec.write_mask_json:
                names.append(f"{prefix}_{spec.key}_masks")
    return tuple(names)


def suite_datasets(suite: str) -> tuple[str, ...]:
    """Dataset names of a suite, in evaluation order."""
    if suite in _FIXED_SUITES:
        return _FIXED_SUITES[suite]
    if suite in ("odinw13", "odinw35"):
        return odinw_dataset_names(suite, "val")
    if suite == "seginw":
        return seginw_dataset_names("val")
    if suite == "zeroshot":
        return tuple(name for part in _ZEROSHOT for name in _FIXED_SUITES[part])
    if suite == "synthetic":
        return synthetic_eval_dataset_names()
    raise KeyError(f"unknown evaluation suite {suite!r}; known suites: {', '.join(SUITE_NAMES)}")
