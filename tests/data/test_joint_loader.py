"""Joint loader: one batch per training dataset per step, configured sizes, determinism, exact resume, rank shards."""

import random

import numpy as np
import pytest
import torch

from openseed.config import get_cfg
from openseed.data.joint_loader import TrainIndexStream, build_joint_train_loader, seeded_global_rngs


def joint_cfg(workers=0, seed=1):
    cfg = get_cfg()
    cfg.DATASETS.TRAIN = ("tsyn_panoptic_train", "tsyn_boxes_train")
    cfg.DATASETS.TRAIN_MAPPERS = ("coco_panoptic_lsj", "objects365_lsj")
    cfg.DATALOADER.TRAIN_IMS_PER_GPU = (2, 3)
    cfg.DATALOADER.NUM_WORKERS = workers
    cfg.INPUT.IMAGE_SIZE = 64
    cfg.SEED = seed
    return cfg


def take(cfg, steps, start_iter=0):
    iterator = iter(build_joint_train_loader(cfg, start_iter=start_iter))
    return [next(iterator) for _ in range(steps)]


def fingerprint(batches):
    """Per step and dataset: (file, image checksum, boxes) of every sample."""
    return [{name: [(d["file_name"], int(d["image"].long().sum()), d["instances"].gt_boxes.tensor.tolist())
                    for d in samples] for name, samples in batch.items()} for batch in batches]


def test_yields_one_batch_per_dataset_with_configured_sizes(tiny_synthetic):
    batches = take(joint_cfg(), 2)
    for batch in batches:
        assert list(batch) == ["tsyn_panoptic_train", "tsyn_boxes_train"]
        assert len(batch["tsyn_panoptic_train"]) == 2 and len(batch["tsyn_boxes_train"]) == 3
        for sample in batch["tsyn_panoptic_train"]:
            instances = sample["instances"]
            assert sample["image"].shape == (3, 64, 64) and sample["image"].dtype == torch.uint8
            assert instances.gt_masks.shape[1:] == (64, 64) and len(instances) >= 1
            assert int(instances.gt_classes.max()) < 12
        for sample in batch["tsyn_boxes_train"]:
            assert not sample["instances"].has("gt_masks") and int(sample["instances"].gt_classes.max()) < 4
            assert "/boxes/train/" in sample["file_name"]


def test_deterministic_resumable_and_independent_of_workers(tiny_synthetic):
    reference = fingerprint(take(joint_cfg(), 4))
    assert fingerprint(take(joint_cfg(), 4)) == reference
    assert fingerprint(take(joint_cfg(), 2, start_iter=2)) == reference[2:]
    assert fingerprint(take(joint_cfg(workers=2), 4)) == reference
    assert fingerprint(take(joint_cfg(seed=2), 4)) != reference


def test_rank_streams_are_disjoint_shards_of_one_permutation():
    size = 10
    ranks = [TrainIndexStream(size, seed=3, rank=r, world_size=2) for r in range(2)]
    epoch0 = [ranks[p % 2].index_at(p // 2) for p in range(size)]
    assert sorted(epoch0) == list(range(size))  # global stream = a permutation per epoch
    epoch1 = [ranks[p % 2].index_at(p // 2) for p in range(size, 2 * size)]
    assert sorted(epoch1) == list(range(size)) and epoch1 != epoch0
    assert TrainIndexStream(size, seed=3, rank=1, world_size=2).index_at(7) == ranks[1].index_at(7)


def test_seeded_global_rngs_restore_the_callers_state():
    np.random.seed(11)
    random.seed(11)
    expected = (np.random.uniform(), random.random())
    np.random.seed(11)
    random.seed(11)
    with seeded_global_rngs([1, 2, 3]):
        inside = np.random.uniform()
    with seeded_global_rngs([1, 2, 3]):
        assert np.random.uniform() == inside
    assert (np.random.uniform(), random.random()) == expected


def test_mismatched_config_lists_are_rejected(tiny_synthetic):
    cfg = joint_cfg()
    cfg.DATALOADER.TRAIN_IMS_PER_GPU = (2,)
    with pytest.raises(ValueError, match="TRAIN_IMS_PER_GPU"):
        build_joint_train_loader(cfg)
