"""The ablation benchmark: a second family of synthetic sets that has both of OpenSeeD's discrepancies.

Beside the demo's family (`layout.synthetic_sets`, unchanged) the "ablation" family is written under
`$DETECTRON2_DATASETS/synthetic_ablation` and registered with the prefix `synabl`:

- `synabl_panoptic_{train,val}`: the demo's 8 mask-labelled things (circle, square, triangle, star) and the 4 stuff
  classes, drawn as large amorphous regions that cover most of the image (task discrepancy);
- `synabl_boxes_{train,val}`: boxes only of `ABLATION_BOX_THINGS`, whose shapes (ring, cross, holed blob, crescent)
  never occur with mask labels and fill only part of their box (data discrepancy); the same amorphous stuff is in
  these images, unlabelled. `synabl_boxes_val_masks` holds the true masks of the val images, for evaluation only;
- `synabl_zeroshot_val`: the demo's zero-shot names (`classes.ZEROSHOT_THINGS`), never in a training set.

`family_sets(family, num_train, num_val)` lists either family's sets; the generator and the registration use it.
"""

from __future__ import annotations

from .classes import COLOURS, PANOPTIC_THINGS, ZEROSHOT_THINGS, ThingClass
from .discrepancy import BOX_ONLY_SHAPES
from .layout import SyntheticSet, synthetic_sets

FAMILIES = ("demo", "ablation")
FAMILY_FOLDER = {"demo": "synthetic", "ablation": "synthetic_ablation"}  # under $DETECTRON2_DATASETS
FAMILY_PREFIX = {"demo": "synthetic", "ablation": "synabl"}  # registered names: {prefix}_{set key}

# one colour per shape, so that colour alone or shape alone identifies a box-only class
ABLATION_BOX_THINGS = tuple(ThingClass(c, s) for c, s in zip(COLOURS, BOX_ONLY_SHAPES))


def ablation_sets(num_train: int = 300, num_val: int = 50) -> tuple[tuple[SyntheticSet, int], ...]:
    """Every set of the ablation family with its number of images."""
    scene = {"scene": "amorphous"}
    return (
        (SyntheticSet("panoptic_train", "panoptic", "train", "panoptic", PANOPTIC_THINGS, (1, 3), with_stuff=True,
                      **scene), num_train),
        (SyntheticSet("panoptic_val", "panoptic", "val", "panoptic", PANOPTIC_THINGS, (1, 4), with_stuff=True,
                      **scene), num_val),
        (SyntheticSet("boxes_train", "boxes", "train", "detection", ABLATION_BOX_THINGS, (1, 3), **scene), num_train),
        (SyntheticSet("boxes_val", "boxes", "val", "detection", ABLATION_BOX_THINGS, (1, 4), write_mask_json=True,
                      **scene), num_val),
        (SyntheticSet("zeroshot_val", "zeroshot", "val", "instances", ZEROSHOT_THINGS, (1, 4), **scene), num_val),
    )


def family_sets(family: str, num_train: int = 300, num_val: int = 50) -> tuple[tuple[SyntheticSet, int], ...]:
    """The sets of a family ("demo" or "ablation") with their numbers of images."""
    if family == "demo":
        return synthetic_sets(num_train, num_val)
    if family == "ablation":
        return ablation_sets(num_train, num_val)
    raise ValueError(f"unknown synthetic family {family!r}; known: {FAMILIES}")
