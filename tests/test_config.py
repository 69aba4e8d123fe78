"""Config keys, `_BASE_` inheritance, overrides and the official key aliases."""

import pytest

from openseed.config import get_cfg, setup_cfg


def test_defaults_are_the_paper_model():
    cfg = get_cfg()
    assert cfg.MODEL.DECODER.DECOUPLED is True
    assert cfg.MODEL.DECODER.NUM_OBJECT_QUERIES == 300
    assert cfg.MODEL.DECODER.NUM_BACKGROUND_QUERIES == 100
    assert cfg.MODEL.DECODER.TEST.PANO_TEMPERATURE == pytest.approx(0.06)
    assert len(cfg.DATASETS.TRAIN) == len(cfg.DATASETS.TRAIN_TASKS) == len(cfg.DATALOADER.TRAIN_IMS_PER_GPU)


def test_base_inheritance_and_aliases(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("MODEL:\n  DECODER:\n    DEC_LAYERS: 3\n    TEST:\n      TEST_FOUCUS_ON_BOX: true\n")
    child = tmp_path / "child.yaml"
    child.write_text("_BASE_: base.yaml\nMODEL:\n  TEXT:\n    AUTOGRESSIVE: false\n")
    cfg = setup_cfg(str(child), ["MODEL.DECODER.NUM_OBJECT_QUERIES", "20"])
    assert cfg.MODEL.DECODER.DEC_LAYERS == 3
    assert cfg.MODEL.DECODER.TEST.FOCUS_ON_BOX is True
    assert cfg.MODEL.TEXT.CAUSAL is False
    assert cfg.MODEL.DECODER.NUM_OBJECT_QUERIES == 20


def test_unknown_key_is_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("MODEL:\n  DECODER:\n    NUM_QUERIESS: 3\n")
    with pytest.raises(KeyError, match="NUM_QUERIESS"):
        setup_cfg(str(bad))
    with pytest.raises(KeyError, match="NOT_A_KEY"):
        setup_cfg(None, ["MODEL.NOT_A_KEY", "1"])
