"""Frozen per-dataset protocols (docs/official_behaviours.md §9.5, §10.4, §10.6) and the evaluator chosen for each dataset type."""

from __future__ import annotations

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import COCOPanopticEvaluator

from openseed.data.registration.suites import SUITE_NAMES, suite_datasets
from openseed.evaluation import EvaluatorUnavailable, build_evaluator, protocol_for
from openseed.evaluation.evaluators import (
    VocabularyCOCOEvaluator,
    VocabularyLVISEvaluator,
    VocabularySemSegEvaluator,
    check_evaluable,
)


@pytest.mark.parametrize(
    ("name", "sizes", "interpolation", "tasks", "max_detections"),
    [
        ("coco_2017_val_panoptic_with_sem_seg", (800, 1333), "bilinear", ("panoptic", "instance", "semantic"), 100),
        ("ade20k_panoptic_val", (640, 2560), "bilinear", ("panoptic", "instance", "semantic"), 100),
        ("ade20k_full_sem_seg_val", (640, 2560), "bilinear", ("semantic",), 100),
        ("lvis_v1_minival", (800, 1333), "bilinear", ("instance",), 300),
        ("odinw35_pothole_val", (800, 1333), "bilinear", ("detection",), 100),
        ("seginw_Chicken_val", (800, 1333), "bilinear", ("instance",), 100),
        ("cityscapes_fine_panoptic_val", (1024, 2048), "bilinear", ("panoptic", "semantic"), 100),
        ("cityscapes_fine_instance_seg_val", (1024, 2048), "bilinear", ("instance",), 100),
        ("bdd10k_40_panoptic_val", (800, 0), "bicubic", ("panoptic", "semantic"), 100),
        ("scannet_41_val_seg", (512, 0), "bicubic", ("semantic",), 100),
        ("sunrgbd_37_val_seg", (512, 0), "bicubic", ("semantic",), 100),
        ("objects365_v2_val", (800, 1333), "bilinear", ("detection",), 100),
    ],
)
def test_protocols_of_the_paper_datasets(name, sizes, interpolation, tasks, max_detections, tiny_cfg):
    protocol = protocol_for(name, tiny_cfg)
    assert (protocol.min_size, protocol.max_size) == sizes
    assert protocol.interpolation == interpolation
    assert protocol.tasks == tasks
    assert protocol.max_detections == max_detections
    assert protocol.vocabulary_source == "metadata"
    assert protocol.computes_masks == (tasks != ("detection",))


def test_synthetic_sets_use_the_config_test_size(esyn, tiny_cfg):
    protocol = protocol_for("esyn_ade_val", tiny_cfg)
    assert (protocol.min_size, protocol.max_size, protocol.size_source) == (128, 213, "config")
    assert protocol.as_dict()["tasks"] == ["panoptic", "instance", "semantic"]
    assert protocol_for("esyn_lvis_val", tiny_cfg).max_detections == 300


def test_every_suite_dataset_has_a_protocol(tiny_cfg):
    for suite in SUITE_NAMES:
        names = suite_datasets(suite)
        assert names, suite
        for name in names:
            assert protocol_for(name, tiny_cfg).tasks == tuple(MetadataCatalog.get(name).tasks)
    assert suite_datasets("synthetic") == (
        "synthetic_panoptic_val", "synthetic_boxes_val", "synthetic_boxes_val_masks", "synthetic_zeroshot_val",
        "synthetic_ade_val", "synthetic_lvis_val", "synthetic_odinw_val")


def test_unregistered_dataset_has_no_protocol(tiny_cfg):
    with pytest.raises(KeyError, match="not_a_dataset"):
        protocol_for("not_a_dataset", tiny_cfg)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("panoptic_val", [COCOPanopticEvaluator, VocabularyCOCOEvaluator, VocabularySemSegEvaluator]),
        ("ade_val", [COCOPanopticEvaluator, VocabularyCOCOEvaluator, VocabularySemSegEvaluator]),
        ("lvis_val", [VocabularyLVISEvaluator]),
        ("odinw_val", [VocabularyCOCOEvaluator]),
        ("zeroshot_val", [VocabularyCOCOEvaluator]),
    ],
)
def test_evaluators_follow_the_tasks(key, expected, esyn, tiny_cfg, tmp_path):
    name = f"esyn_{key}"
    DatasetCatalog.get(name)  # loading sets the json category id maps
    evaluator = build_evaluator(protocol_for(name, tiny_cfg), str(tmp_path))
    assert [type(e) for e in evaluator._evaluators] == expected
    for inner in evaluator._evaluators:
        if isinstance(inner, VocabularyCOCOEvaluator):
            assert inner._tasks == (("bbox",) if key == "odinw_val" else ("bbox", "segm"))


def test_ade_like_thing_ids_are_reindexed_for_the_coco_api(esyn, tiny_cfg, tmp_path):
    """Things and stuff interleave: vocabulary indices of things are 1, 3, 5, ... and become 0, 1, 2, ..."""
    name = "esyn_ade_val"
    evaluator = VocabularyCOCOEvaluator(name, tasks=("bbox",), distributed=False, output_dir=None,
                                        max_dets_per_image=100)
    thing_map = MetadataCatalog.get(name).thing_dataset_id_to_contiguous_id
    vocab_indices = sorted(thing_map.values())
    assert vocab_indices != list(range(len(vocab_indices)))
    assert evaluator._thing_rank_of_class[vocab_indices].tolist() == list(range(len(vocab_indices)))
    assert evaluator._metadata.thing_dataset_id_to_contiguous_id == {
        category: vocab_indices.index(index) for category, index in thing_map.items()}
    stuff = [i for i in range(len(evaluator._thing_rank_of_class)) if i not in vocab_indices]
    assert (evaluator._thing_rank_of_class[stuff] == -1).all()


def test_cityscapes_instance_needs_cityscapes_scripts(tiny_cfg, monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(EvaluatorUnavailable, match="cityscapesscripts"):
        check_evaluable(protocol_for("cityscapes_fine_instance_seg_val", tiny_cfg))
