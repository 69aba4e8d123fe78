"""The training datasets of a config, one frozen record each, made and validated once.

Five config keys hold one entry per training dataset, aligned by position:

    DATASETS.TRAIN               names of registered datasets
    DATASETS.TRAIN_TASKS         "seg" or "det" (`openseed.structures.TRAIN_TASKS`)
    DATASETS.TRAIN_MAPPERS       names of `openseed.data.mappers.MAPPERS`
    DATASETS.TRAIN_LOSS_WEIGHTS  multiplier of the dataset's losses
    DATALOADER.TRAIN_IMS_PER_GPU images of the dataset in each per-GPU batch

plus `DATASETS.TRAIN_RATIOS` (optional, replay: the fraction of the iterations that carry a batch of the dataset).
`train_dataset_specs(cfg)` checks them and returns one `TrainDatasetSpec` per dataset; the joint loader, the
meta-architecture and the training benchmark take these records. Errors name the config keys and their values.
"""

from __future__ import annotations

from dataclasses import dataclass

from openseed.structures import TRAIN_TASKS, TrainTask
from openseed.vocabulary import Vocabulary, dataset_vocabulary


@dataclass(frozen=True)
class TrainDatasetSpec:
    """One training dataset: DATASETS.TRAIN[slot] and its entry in every aligned key.

    Attributes:
        name: registered dataset name.
        task: "seg" (masks, boxes, classes) or "det" (boxes and classes).
        mapper: name of its training mapper (`openseed.data.mappers.MAPPERS`).
        images_per_gpu: images of this dataset in each per-GPU batch (> 0).
        loss_weight: multiplier of its losses.
        ratio: fraction of the iterations that carry one of its batches, in (0, 1].
        slot: its position in DATASETS.TRAIN (seeds its index stream).
    """

    name: str
    task: TrainTask
    mapper: str
    images_per_gpu: int
    loss_weight: float
    ratio: float
    slot: int

    def vocabulary(self) -> Vocabulary:
        """The dataset's class names with thing/stuff flags, from its registered metadata (read when asked: models
        are built before the training datasets are registered, e.g. for inference)."""
        return dataset_vocabulary(self.name)


def train_ratios(cfg) -> tuple[float, ...]:
    """`DATASETS.TRAIN_RATIOS` checked (one per dataset, in (0, 1], at least one 1.0), or all 1.0 when empty."""
    names, ratios = tuple(cfg.DATASETS.TRAIN), tuple(float(r) for r in cfg.DATASETS.TRAIN_RATIOS)
    if not ratios:
        return tuple(1.0 for _ in names)
    if len(ratios) != len(names) or not all(0.0 < r <= 1.0 for r in ratios) or max(ratios) != 1.0:
        raise ValueError(f"DATASETS.TRAIN_RATIOS {ratios} must have one value in (0, 1] per DATASETS.TRAIN entry "
                         f"{names}, at least one of them 1.0 (so that every iteration has a batch)")
    return ratios


def train_dataset_specs(cfg) -> tuple[TrainDatasetSpec, ...]:
    """One `TrainDatasetSpec` per DATASETS.TRAIN entry, in order.

    Raises:
        ValueError: an empty DATASETS.TRAIN, aligned keys of other lengths, an unknown task, a non-positive number
            of images per GPU, or invalid ratios; the message names the keys and their values.
    """
    names, mappers = tuple(cfg.DATASETS.TRAIN), tuple(cfg.DATASETS.TRAIN_MAPPERS)
    sizes = tuple(cfg.DATALOADER.TRAIN_IMS_PER_GPU)
    tasks, weights = tuple(cfg.DATASETS.TRAIN_TASKS), tuple(cfg.DATASETS.TRAIN_LOSS_WEIGHTS)
    if not names or not (len(names) == len(mappers) == len(sizes)):
        raise ValueError(f"DATASETS.TRAIN {names}, DATASETS.TRAIN_MAPPERS {mappers} and "
                         f"DATALOADER.TRAIN_IMS_PER_GPU {sizes} must be non-empty and of equal length")
    if not (len(names) == len(tasks) == len(weights)):
        raise ValueError(f"DATASETS.TRAIN ({len(names)}), DATASETS.TRAIN_TASKS ({len(tasks)}) and "
                         f"DATASETS.TRAIN_LOSS_WEIGHTS ({len(weights)}) must have one entry per dataset")
    for slot, (name, task, size) in enumerate(zip(names, tasks, sizes)):
        if task not in TRAIN_TASKS:
            raise ValueError(f"DATASETS.TRAIN_TASKS: task of {name!r} must be 'seg' or 'det', got {task!r}")
        if size <= 0:
            raise ValueError(f"DATALOADER.TRAIN_IMS_PER_GPU[{slot}] for {name!r} must be positive, got {size}")
    ratios = train_ratios(cfg)
    return tuple(TrainDatasetSpec(name, task, mapper, int(size), float(weight), ratio, slot)
                 for slot, (name, task, mapper, size, weight, ratio)
                 in enumerate(zip(names, tasks, mappers, sizes, weights, ratios)))
