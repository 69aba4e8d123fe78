"""The pre-training and fine-tuning recipes (docs/official_behaviours.md §11): they load without unknown keys, name registered datasets,
known mappers and valid tasks, and carry the schedules of the table in docs/official_behaviours.md §11."""

from pathlib import Path

import pytest

from openseed.config import setup_cfg
from openseed.data import MAPPERS
from openseed.data.registration.custom_coco import parse_custom_entry
from openseed.engine import check_datasets_registered

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
RECIPES = {
    "openseed/swint_decoupled_coco_only.yaml": (368750, (327778, 355092)),
    "finetune/ade20k_panoptic.yaml": (160000, (135000, 150000)),
    "finetune/ade20k_instance.yaml": (160000, (135000, 150000)),
    "finetune/ade20k_semantic.yaml": (160000, (135000, 150000)),
    "finetune/cityscapes_panoptic.yaml": (90000, (80000, 87000)),
    "finetune/cityscapes_instance.yaml": (90000, (80000, 87000)),
    "finetune/cityscapes_semantic.yaml": (90000, (80000, 87000)),
    "finetune/coco_panoptic.yaml": (90000, (80000, 87000)),
    "finetune/custom_coco_json_example.yaml": (10000, (8000, 9500)),
}


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_recipe_is_consistent(recipe):
    cfg = setup_cfg(str(CONFIGS / recipe))
    max_iter, steps = RECIPES[recipe]
    assert (cfg.SOLVER.MAX_ITER, tuple(cfg.SOLVER.STEPS)) == (max_iter, steps)
    assert cfg.SOLVER.BASE_LR == pytest.approx(1e-4)
    assert cfg.SOLVER.BACKBONE_MULTIPLIER == pytest.approx(0.1) and cfg.SOLVER.TEXT_ENCODER_MULTIPLIER == pytest.approx(0.1)
    assert cfg.MODEL.DECODER.DECOUPLED and cfg.MODEL.BACKBONE.NAME == "D2SwinTransformer"
    names = cfg.DATASETS.TRAIN
    assert len(names) == len(cfg.DATASETS.TRAIN_TASKS) == len(cfg.DATASETS.TRAIN_MAPPERS)
    assert len(names) == len(cfg.DATASETS.TRAIN_LOSS_WEIGHTS) == len(cfg.DATALOADER.TRAIN_IMS_PER_GPU)
    assert set(cfg.DATASETS.TRAIN_TASKS) <= {"seg", "det"}
    assert set(cfg.DATASETS.TRAIN_MAPPERS) <= set(MAPPERS)
    custom = {parse_custom_entry(entry)[0] for entry in cfg.DATASETS.CUSTOM}
    check_datasets_registered([n for n in (*names, *cfg.DATASETS.TEST) if n not in custom], recipe)
    assert set(names) | set(cfg.DATASETS.TEST) >= custom


def test_ade20k_and_cityscapes_data_blocks_follow_the_spec():
    ade = setup_cfg(str(CONFIGS / "finetune/ade20k_panoptic.yaml"))
    assert list(ade.INPUT.MIN_SIZE_TRAIN) == list(range(320, 1281, 64))
    assert (ade.INPUT.MAX_SIZE_TRAIN, tuple(ade.INPUT.CROP.SIZE), ade.INPUT.SIZE_DIVISIBILITY) == (2560, (640, 640), 640)
    assert (ade.INPUT.MIN_SIZE_TEST, ade.INPUT.MAX_SIZE_TEST) == (640, 2560)
    city = setup_cfg(str(CONFIGS / "finetune/cityscapes_semantic.yaml"))
    assert len(city.INPUT.MIN_SIZE_TRAIN) == 16 and city.INPUT.MIN_SIZE_TRAIN[0] == 512
    assert city.INPUT.MIN_SIZE_TRAIN[-1] == 2048 and tuple(city.INPUT.CROP.SIZE) == (512, 1024)
    assert (city.INPUT.MIN_SIZE_TEST, city.INPUT.MAX_SIZE_TEST) == (1024, 2048)
