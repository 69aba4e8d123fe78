"""The paper's zero-shot numbers (docs/official_behaviours.md §13), per dataset and summary column, for OpenSeeD (T) = Swin-T and (L) = Swin-L.

Sources: Table 2 (ADE20K, Cityscapes, LVIS, BDD, ScanNet, SUN RGB-D), Table 3 (COCO, the pre-trained model without
fine-tuning), Table 4 (SegInW per set, mean, median); the ODinW-35 mean / median come from the DINOv paper (same
group, docs/official_behaviours.md §13.5, [2ND]). Columns are those of `summary.COLUMNS`.
"""

from __future__ import annotations

PAPER_MODELS = ("T", "L")

# dataset -> column -> (Swin-T, Swin-L)
DATASET_NUMBERS: dict[str, dict[str, tuple[float, float]]] = {
    "ade20k_panoptic_val": {"PQ": (19.8, 19.7), "mask AP": (14.1, 15.0), "box AP": (17.0, 17.7), "mIoU": (22.9, 23.4)},
    "cityscapes_fine_panoptic_val": {"PQ": (37.3, 41.4), "mIoU": (46.1, 47.8)},
    "cityscapes_fine_instance_seg_val": {"mask AP": (26.2, 33.2)},
    "cityscapes_fine_sem_seg_val": {"mIoU": (46.1, 47.8)},
    "lvis_v1_minival": {"mask AP": (19.4, 21.0), "box AP": (21.8, 23.0)},
    "bdd10k_40_panoptic_val": {"PQ": (17.2, 19.4)},
    "bdd10k_val_sem_seg": {"mIoU": (44.8, 47.4)},
    "scannet_21_panoptic_val": {"PQ": (39.7, 42.2)},
    "scannet_21_val_seg": {"mIoU": (45.1, 48.7)},
    "scannet_41_val_seg": {"mIoU": (25.2, 27.4)},
    "sunrgbd_37_val_seg": {"mIoU": (39.0, 41.9)},
    "coco_2017_val_panoptic_with_sem_seg": {
        "PQ": (55.4, 59.5), "mask AP": (47.6, 53.2), "box AP": (52.0, 58.2), "mIoU": (64.0, 68.6),
    },
}

# SegInW mask AP per set (Table 4), in the order of `seginw_sets()`.
_SEGINW_MASK_AP = {
    "Airplane-Parts": (12.2, 13.0), "Bottles": (27.4, 39.7), "Brain-Tumor": (5.0, 2.1), "Chicken": (68.7, 82.9),
    "Cows": (21.5, 40.9), "Electric-Shaver": (0.3, 4.7), "Elephants": (73.3, 72.9), "Fruits": (72.9, 76.4),
    "Garbage": (7.3, 16.9), "Ginger-Garlic": (6.2, 13.6), "Hand": (92.4, 92.7), "Hand-Metal": (62.3, 38.7),
    "House-Parts": (0.5, 1.8), "HouseHold-Items": (55.0, 50.0), "Nutterfly-Squireel": (63.6, 40.0),
    "Phones": (2.4, 7.6), "Poles": (4.6, 4.6), "Puppies": (63.8, 74.6), "Rail": (5.4, 1.8),
    "Salmon-Fillet": (15.6, 15.0), "Strawberry": (85.3, 82.8), "Tablets": (32.0, 47.4), "Toolkits": (4.8, 15.4),
    "Trash": (14.5, 15.3), "Watermelon": (51.0, 52.3),
}
DATASET_NUMBERS.update({f"seginw_{name}_val": {"mask AP": values} for name, values in _SEGINW_MASK_AP.items()})

# suite -> statistic -> (Swin-T, Swin-L)
SUITE_NUMBERS: dict[str, dict[str, tuple[float, float]]] = {
    "seginw": {"mean": (33.9, 36.1), "median": (21.5, 38.7)},
    "odinw35": {"mean": (14.2, 15.2), "median": (3.1, 5.0)},
}


def _pick(values: tuple[float, float], paper_model: str) -> float:
    if paper_model not in PAPER_MODELS:
        raise ValueError(f"paper model must be one of {PAPER_MODELS}, got {paper_model!r}")
    return values[PAPER_MODELS.index(paper_model)]


def paper_number(dataset: str, column: str, paper_model: str | None) -> float | None:
    """The paper's value of `column` on `dataset` for model "T" or "L"; None where the paper gives none."""
    values = DATASET_NUMBERS.get(dataset, {}).get(column)
    return None if values is None or paper_model is None else _pick(values, paper_model)


def paper_suite_number(suite: str, statistic: str, paper_model: str | None) -> float | None:
    values = SUITE_NUMBERS.get(suite, {}).get(statistic)
    return None if values is None or paper_model is None else _pick(values, paper_model)
