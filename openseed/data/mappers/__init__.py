"""Dataset mappers (Detectron2 style, `@configurable`), selected by name in `DATASETS.TRAIN_MAPPERS`.

| name | mapper | task |
|---|---|---|
| `coco_panoptic_lsj` | `COCOPanopticLSJMapper` (docs/official_behaviours.md §10.1) | seg |
| `coco_instance_lsj` | `COCOInstanceLSJMapper` | seg |
| `objects365_lsj` (`object365`) | `Objects365LSJMapper` (docs/official_behaviours.md §10.2) | det |
| `mask_former_semantic` / `_panoptic` / `_instance` | `MaskFormer{Semantic,Panoptic,Instance}Mapper` (docs/official_behaviours.md §10.3) | seg |
| `test` | `TestMapper` (docs/official_behaviours.md §10.4) | evaluation |
"""

from __future__ import annotations

from .draws import NUMPY_GLOBAL_DRAWS, ReplayDraws
from .lsj import COCOInstanceLSJMapper, COCOPanopticLSJMapper, build_lsj_augmentation, masks_to_boxes
from .maskformer import MaskFormerInstanceMapper, MaskFormerPanopticMapper, MaskFormerSemanticMapper
from .objects365 import Objects365LSJMapper
from .robust import BadSampleError, SkipBadSamples
from .test_mapper import TestMapper

MAPPERS = {
    "coco_panoptic_lsj": COCOPanopticLSJMapper,
    "coco_instance_lsj": COCOInstanceLSJMapper,
    "objects365_lsj": Objects365LSJMapper,
    "object365": Objects365LSJMapper,
    "mask_former_semantic": MaskFormerSemanticMapper,
    "mask_former_panoptic": MaskFormerPanopticMapper,
    "mask_former_instance": MaskFormerInstanceMapper,
    "test": TestMapper,
}


def build_mapper(name: str, cfg, is_train: bool = True, dataset_name: str | None = None):
    """The mapper registered as `name`, built from `cfg` (for `dataset_name`'s vocabulary when given)."""
    if name not in MAPPERS:
        raise KeyError(f"unknown dataset mapper {name!r}; known: {sorted(MAPPERS)}")
    return MAPPERS[name](cfg, is_train=is_train, dataset_name=dataset_name)


__all__ = [
    "MAPPERS",
    "NUMPY_GLOBAL_DRAWS",
    "BadSampleError",
    "COCOInstanceLSJMapper",
    "COCOPanopticLSJMapper",
    "MaskFormerInstanceMapper",
    "MaskFormerPanopticMapper",
    "MaskFormerSemanticMapper",
    "Objects365LSJMapper",
    "ReplayDraws",
    "SkipBadSamples",
    "TestMapper",
    "build_lsj_augmentation",
    "build_mapper",
    "masks_to_boxes",
]
