"""Replay in the joint loader (DATASETS.TRAIN_RATIOS): which iterations carry a dataset, batch counts, exact resume."""

import pytest

from openseed.data.joint_loader import batches_before, build_joint_train_loader, takes_part
from tests.data.test_joint_loader import fingerprint, joint_cfg, take


@pytest.mark.parametrize("ratio", [1.0, 0.5, 0.25, 0.3, 1 / 3, 0.7])
def test_ratio_spreads_batches_evenly_and_counts_them(ratio):
    carried = [takes_part(ratio, i) for i in range(300)]
    for k in range(301):
        assert sum(carried[:k]) == batches_before(ratio, k)
    # every window of 1/ratio iterations holds one batch (± 1): evenly spread, none skipped or doubled
    window = round(1 / ratio)
    counts = [sum(carried[i:i + window]) for i in range(0, 300 - window)]
    assert min(counts) >= round(ratio * window) - 1 and max(counts) <= round(ratio * window) + 1
    assert sum(carried) == pytest.approx(300 * ratio, abs=1)


def replay_cfg(ratios=(1.0, 0.5)):
    cfg = joint_cfg()
    cfg.DATASETS.TRAIN_RATIOS = ratios
    return cfg


def test_replay_dataset_in_a_fraction_of_the_steps_and_exact_resume(tiny_synthetic):
    batches = take(replay_cfg(), 6)
    assert [sorted(b) for b in batches] == [["tsyn_panoptic_train"], ["tsyn_boxes_train", "tsyn_panoptic_train"]] * 3
    reference = fingerprint(batches)
    # the replayed stream continues where it stopped: its k-th batch is the same as without gaps
    plain = fingerprint(take(joint_cfg(), 3))
    assert [b["tsyn_boxes_train"] for b in reference[1::2]] == [b["tsyn_boxes_train"] for b in plain]
    assert fingerprint(take(replay_cfg(), 3, start_iter=3)) == reference[3:]
    assert fingerprint(take(replay_cfg(), 2, start_iter=4)) == reference[4:]


@pytest.mark.parametrize("ratios", [(1.0,), (0.5, 0.5), (1.0, 0.0), (1.0, 1.5)])
def test_bad_ratios_are_refused(tiny_synthetic, ratios):
    with pytest.raises(ValueError, match="TRAIN_RATIOS"):
        build_joint_train_loader(replay_cfg(ratios))
