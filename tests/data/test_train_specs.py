"""Training-dataset records: one per DATASETS.TRAIN entry, validated once (errors name the keys), and exactly what
the joint loader and the meta-architecture use."""

from pathlib import Path

import pytest
from detectron2.data import MetadataCatalog
from detectron2.modeling import build_model

from openseed.config import get_cfg, setup_cfg
from openseed.data.joint_loader import build_joint_train_loader
from openseed.data.mappers import MAPPERS
from openseed.data.train_specs import TrainDatasetSpec, train_dataset_specs
from openseed.vocabulary import Vocabulary
from tests.data.test_joint_loader import joint_cfg

TINY = str(Path(__file__).resolve().parents[2] / "configs" / "tiny" / "tiny_decoupled.yaml")


def test_records_of_the_default_config():
    cfg = get_cfg()
    cfg.DATASETS.TRAIN_LOSS_WEIGHTS, cfg.DATASETS.TRAIN_RATIOS = (1.0, 0.25), (1.0, 0.5)
    assert train_dataset_specs(cfg) == (
        TrainDatasetSpec("coco_2017_train_panoptic", "seg", "coco_panoptic_lsj", 2, 1.0, 1.0, 0),
        TrainDatasetSpec("objects365_v2_train", "det", "objects365_lsj", 2, 0.25, 0.5, 1),
    )
    with pytest.raises(AttributeError):
        train_dataset_specs(cfg)[0].task = "det"  # frozen


@pytest.mark.parametrize(("key", "value", "message"), [
    ("DATASETS.TRAIN", (), r"DATASETS.TRAIN \(\), DATASETS.TRAIN_MAPPERS .* must be non-empty"),
    ("DATASETS.TRAIN_MAPPERS", ("coco_panoptic_lsj",), r"DATASETS.TRAIN_MAPPERS \('coco_panoptic_lsj',\) and"),
    ("DATALOADER.TRAIN_IMS_PER_GPU", (2,), r"DATALOADER.TRAIN_IMS_PER_GPU \(2,\) must be non-empty and of equal"),
    ("DATASETS.TRAIN_TASKS", ("seg",), r"DATASETS.TRAIN_TASKS \(1\) and DATASETS.TRAIN_LOSS_WEIGHTS \(2\) must have"),
    ("DATASETS.TRAIN_LOSS_WEIGHTS", (1.0, 1.0, 1.0), r"DATASETS.TRAIN_LOSS_WEIGHTS \(3\) must have one entry"),
    ("DATASETS.TRAIN_TASKS", ("seg", "box"), r"DATASETS.TRAIN_TASKS: task of 'objects365_v2_train' must be 'seg' or "
                                             r"'det', got 'box'"),
    ("DATALOADER.TRAIN_IMS_PER_GPU", (2, 0), r"DATALOADER.TRAIN_IMS_PER_GPU\[1\] for 'objects365_v2_train' must be "
                                            r"positive, got 0"),
    ("DATASETS.TRAIN_RATIOS", (0.5, 0.5), r"DATASETS.TRAIN_RATIOS \(0.5, 0.5\) must have one value in \(0, 1\]"),
])
def test_validation_errors_name_the_key(key, value, message):
    cfg = get_cfg()
    node, leaf = key.split(".")
    setattr(cfg[node], leaf, value)
    with pytest.raises(ValueError, match=message):
        train_dataset_specs(cfg)


def test_loader_and_meta_architecture_use_the_records(tiny_synthetic):
    cfg = joint_cfg()
    cfg.DATASETS.TRAIN_LOSS_WEIGHTS, cfg.DATASETS.TRAIN_RATIOS = (1.0, 0.5), (1.0, 0.5)
    specs = train_dataset_specs(cfg)
    loader = build_joint_train_loader(cfg)
    assert loader.dataset_names == tuple(spec.name for spec in specs) == ("tsyn_panoptic_train", "tsyn_boxes_train")
    assert loader.batch_sizes == {spec.name: spec.images_per_gpu for spec in specs} == {
        "tsyn_panoptic_train": 2, "tsyn_boxes_train": 3}
    assert loader.ratios == {spec.name: spec.ratio for spec in specs}
    mappers = [loader.loaders[spec.name].dataset.mapper.mapper for spec in specs]
    assert [type(m) for m in mappers] == [MAPPERS[spec.mapper] for spec in specs]
    assert [loader.loaders[spec.name].dataset.stream.slot for spec in specs] == [0, 1]
    for spec in specs:
        assert spec.vocabulary() == Vocabulary.from_metadata(MetadataCatalog.get(spec.name))
        assert len(spec.vocabulary()) > 0

    model_cfg = setup_cfg(TINY, ["DATASETS.TRAIN", "('tsyn_panoptic_train', 'tsyn_boxes_train')",
                                 "DATASETS.TRAIN_LOSS_WEIGHTS", "(1.0, 0.5)"])
    model = build_model(model_cfg)
    assert tuple(model.train_datasets.values()) == train_dataset_specs(model_cfg)
    assert [(s.task, s.loss_weight) for s in model.train_datasets.values()] == [("seg", 1.0), ("det", 0.5)]


def test_a_model_built_for_inference_does_not_depend_on_the_training_keys():
    model = build_model(setup_cfg(TINY, ["DATALOADER.TRAIN_IMS_PER_GPU", "(1,)"]))  # 2 datasets, 1 batch size
    with pytest.raises(ValueError, match=r"DATALOADER.TRAIN_IMS_PER_GPU \(1,\) must be non-empty and of equal"):
        model.train_datasets  # noqa: B018  (made when training needs them)
