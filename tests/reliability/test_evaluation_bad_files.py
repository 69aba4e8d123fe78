"""Evaluation with missing, corrupt or truncated images and annotation files, and unknown dataset names: a clear
error naming the file (or the closest registered names), never silent garbage metrics."""

from __future__ import annotations

import itertools
import os
import re

import pytest
from detectron2.data import MetadataCatalog

from openseed.config import setup_cfg
from openseed.data.mappers.robust import BadSampleError
from openseed.data.registration.common import DatasetFilesMissing
from openseed.data.registration.synthetic import register_synthetic_datasets
from openseed.data.synthetic import generate_synthetic_datasets
from openseed.engine.trainer import check_datasets_registered
from openseed.evaluation import evaluate, results_path
from tests.evaluation.conftest import TINY_CONFIG
from tests.evaluation.oracle import GroundTruthModel

_prefixes = itertools.count()


@pytest.fixture
def datasets(tmp_path) -> str:
    """Registration prefix of a fresh synthetic generation (3 val images per set)."""
    root = str(tmp_path / "synthetic")
    generate_synthetic_datasets(root, seed=0, num_train=1, num_val=3)
    prefix = f"badfiles{next(_prefixes)}"
    register_synthetic_datasets(root, prefix=prefix)
    return prefix


def _evaluate(name, output):
    cfg = setup_cfg(TINY_CONFIG, ["DATALOADER.NUM_WORKERS", "0"])
    return evaluate(GroundTruthModel(name), cfg, [name], str(output))


def _first_image(name) -> str:
    image_root = MetadataCatalog.get(name).image_root
    return os.path.join(image_root, sorted(os.listdir(image_root))[0])


@pytest.mark.parametrize("damage", ["missing", "truncated", "garbage"])
def test_bad_image_fails_naming_the_file(datasets, tmp_path, damage):
    name = f"{datasets}_panoptic_val"
    image = _first_image(name)
    data = open(image, "rb").read()
    if damage == "missing":
        os.remove(image)
    else:
        with open(image, "wb") as handle:
            handle.write(data[: len(data) // 3] if damage == "truncated" else b"\x00not an image" * 20)
    problem = "not found" if damage == "missing" else "is corrupt or truncated"
    with pytest.raises(BadSampleError, match=f"{os.path.basename(image)}: image file {problem}"):
        _evaluate(name, tmp_path / "out")
    assert not os.path.exists(results_path(str(tmp_path / "out"), name))


@pytest.mark.parametrize("set_name, key", [("boxes_val", "json_file"), ("panoptic_val", "panoptic_json")])
def test_missing_annotation_file_is_named(datasets, tmp_path, set_name, key):
    name = f"{datasets}_{set_name}"
    path = getattr(MetadataCatalog.get(name), key)
    os.remove(path)
    with pytest.raises(DatasetFilesMissing, match=os.path.basename(path)):
        _evaluate(name, tmp_path / "out")


@pytest.mark.parametrize("set_name, key", [("boxes_val", "json_file"), ("panoptic_val", "panoptic_json")])
def test_truncated_annotation_file_is_named(datasets, tmp_path, set_name, key):
    name = f"{datasets}_{set_name}"
    path = getattr(MetadataCatalog.get(name), key)
    content = open(path).read()
    with open(path, "w") as handle:
        handle.write(content[: len(content) // 2])
    with pytest.raises(ValueError, match=rf"dataset '{name}': annotation file {re.escape(path)} is corrupt or truncated"):
        _evaluate(name, tmp_path / "out")


def test_unknown_dataset_lists_the_closest_names(datasets, tmp_path):
    misspelt = f"{datasets}_panoptc_val"
    with pytest.raises(KeyError, match=rf"closest registered names: \['{datasets}_panoptic_val'"):
        _evaluate(misspelt, tmp_path / "out")
    with pytest.raises(KeyError, match=rf"'{misspelt}': closest registered names \['{datasets}_panoptic_val'"):
        check_datasets_registered([misspelt], "--datasets")
    with pytest.raises(KeyError, match="closest registered names none"):
        check_datasets_registered(["zzzzzzzzzzzzzzzzzzzzzzzzzz"], "--datasets")
