"""Stored evaluation results are re-used only when everything that made them is equal; otherwise the dataset is
evaluated again and the log names the part that differs. A killed evaluation, re-run, completes."""

from __future__ import annotations

import hashlib
import importlib
import itertools
import json
import logging
import os

import pytest
import torch
from detectron2.data import MetadataCatalog

from openseed.config import setup_cfg
from openseed.data.registration.synthetic import register_synthetic_datasets
from openseed.data.synthetic import generate_synthetic_datasets
from openseed.evaluation import evaluate, protocols, results_path
from openseed.evaluation import fingerprint as fingerprint_module
from openseed.evaluation.fingerprint import CITATION, weights_fingerprint
from openseed.evaluation.protocols import SizeRule
from openseed.vocabulary import Vocabulary
from tests.evaluation.conftest import TINY_CONFIG
from tests.evaluation.oracle import GroundTruthModel

LOGGER = "openseed.evaluation.evaluate"
evaluate_module = importlib.import_module(LOGGER)  # the package re-exports a function of the same name
_prefixes = itertools.count()


@pytest.fixture
def boxes_dataset(tmp_path) -> str:
    """A fresh synthetic box-detection dataset of 3 images, registered under a unique name."""
    root = str(tmp_path / "synthetic")
    generate_synthetic_datasets(root, seed=0, num_train=1, num_val=3)
    prefix = f"stale{next(_prefixes)}"
    register_synthetic_datasets(root, prefix=prefix)
    return f"{prefix}_boxes_val"


def _cfg(*opts):
    return setup_cfg(TINY_CONFIG, ["DATALOADER.NUM_WORKERS", "0", *opts])


def _evaluate(name, cfg, output, caplog) -> GroundTruthModel:
    """Evaluate; returns the model (its `emitted` list is empty when stored results were re-used)."""
    model = GroundTruthModel(name)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        evaluate(model, cfg, [name], str(output))
    return model


def _reused(model: GroundTruthModel, caplog) -> bool:
    if model.emitted:
        return False
    assert "re-using stored results" in caplog.text
    return True


def test_equal_fingerprint_reuses_and_result_neutral_keys_do_not_matter(boxes_dataset, tmp_path, caplog):
    assert not _reused(_evaluate(boxes_dataset, _cfg(), tmp_path, caplog), caplog)
    neutral = _cfg("OUTPUT_DIR", str(tmp_path / "elsewhere"), "DATALOADER.NUM_WORKERS", "2", "SOLVER.LOG_PERIOD", "3",
                   "TEST.EVAL_PERIOD", "7", "MODEL.TEXT.CACHE_DIR", str(tmp_path / "cache"))
    assert _reused(_evaluate(boxes_dataset, neutral, tmp_path, caplog), caplog)


def test_other_config_is_evaluated_again_and_the_log_names_the_keys(boxes_dataset, tmp_path, caplog):
    _evaluate(boxes_dataset, _cfg(), tmp_path, caplog)
    other = _cfg("TEST.AMP.ENABLED", "True", "TEST.AMP.DTYPE", "bfloat16", "MODEL.DECODER.TEST.DETECTIONS_PER_IMAGE", "1")
    assert not _reused(_evaluate(boxes_dataset, other, tmp_path, caplog), caplog)
    assert "config (MODEL.DECODER.TEST.DETECTIONS_PER_IMAGE, TEST.AMP.DTYPE, TEST.AMP.ENABLED)" in caplog.text
    assert _reused(_evaluate(boxes_dataset, other, tmp_path, caplog), caplog)
    architecture = _cfg("TEST.AMP.ENABLED", "True", "TEST.AMP.DTYPE", "bfloat16",
                        "MODEL.DECODER.TEST.DETECTIONS_PER_IMAGE", "1", "MODEL.DECODER.DEC_LAYERS", "3")
    assert not _reused(_evaluate(boxes_dataset, architecture, tmp_path, caplog), caplog)
    assert "config (MODEL.DECODER.DEC_LAYERS)" in caplog.text


def test_other_protocol_is_evaluated_again(boxes_dataset, tmp_path, caplog):
    _evaluate(boxes_dataset, _cfg(), tmp_path, caplog)
    assert not _reused(_evaluate(boxes_dataset, _cfg("INPUT.MIN_SIZE_TEST", "96"), tmp_path, caplog), caplog)
    assert "another protocol; config (INPUT.MIN_SIZE_TEST)" in caplog.text


def test_results_citing_the_design_notes_the_old_way_are_reused(boxes_dataset, tmp_path, caplog, monkeypatch):
    """Results of versions that cited the design notes as "spec §10.4" stay valid; another source does not."""
    monkeypatch.setattr(protocols, "size_rule", lambda name: SizeRule(None, None, source=f"{CITATION}10.4 [CODE]"))
    _evaluate(boxes_dataset, _cfg(), tmp_path, caplog)
    stored_file = results_path(str(tmp_path), boxes_dataset)
    for source, reused in (("spec §10.4 [CODE]", True), ("spec §10.4 [DESIGN]", False)):
        stored = json.loads(open(stored_file).read())
        stored["protocol"]["size_source"] = source
        with open(stored_file, "w") as handle:
            json.dump(stored, handle)
        assert _reused(_evaluate(boxes_dataset, _cfg(), tmp_path, caplog), caplog) == reused, source
    assert "another protocol" in caplog.text


def test_weights_are_identified_by_content_hashed_once(boxes_dataset, tmp_path, caplog, monkeypatch):
    weights = tmp_path / "weights.pth"
    weights.write_bytes(b"stand-in weights A")
    cfg = _cfg("MODEL.WEIGHTS", str(weights))
    _evaluate(boxes_dataset, cfg, tmp_path / "out", caplog)
    cache = json.loads((tmp_path / "weights.pth.sha256.json").read_text())
    assert cache["sha256"] == hashlib.sha256(b"stand-in weights A").hexdigest()
    assert json.loads(open(results_path(str(tmp_path / "out"), boxes_dataset)).read())["weights"]["sha256"] == \
        cache["sha256"]

    real_file_sha256 = fingerprint_module.file_sha256

    def no_weights_hashing(path):
        if os.path.samefile(path, weights):
            raise AssertionError(f"{path} was hashed again although its cached hash is valid")
        return real_file_sha256(path)

    monkeypatch.setattr(fingerprint_module, "file_sha256", no_weights_hashing)
    assert _reused(_evaluate(boxes_dataset, cfg, tmp_path / "out", caplog), caplog)
    monkeypatch.undo()

    weights.write_bytes(b"stand-in weights B")  # same size, new content, new modification time
    stat = os.stat(weights)
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert not _reused(_evaluate(boxes_dataset, cfg, tmp_path / "out", caplog), caplog)
    assert "another weights" in caplog.text


def test_models_are_told_apart_by_their_parameters(tmp_path):
    torch.manual_seed(0)
    first, same = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    same.load_state_dict(first.state_dict())
    other = torch.nn.Linear(4, 3)
    assert weights_fingerprint("", first) == weights_fingerprint("", same)
    assert weights_fingerprint("", first) != weights_fingerprint("", other)
    file = tmp_path / "init.pth"
    file.write_bytes(b"initial weights")
    trained = weights_fingerprint(str(file), other)  # e.g. evaluated after training from `init.pth`
    assert weights_fingerprint(str(file), first)["sha256"] == trained["sha256"]
    assert weights_fingerprint(str(file), first) != trained
    with pytest.raises(FileNotFoundError, match="no_such.pth"):
        weights_fingerprint("no_such.pth")


def test_edited_annotation_file_is_evaluated_again(boxes_dataset, tmp_path, caplog):
    _evaluate(boxes_dataset, _cfg(), tmp_path, caplog)
    json_file = MetadataCatalog.get(boxes_dataset).json_file
    annotations = json.loads(open(json_file).read())
    annotations["annotations"][0]["bbox"][2] += 3
    with open(json_file, "w") as handle:
        json.dump(annotations, handle)
    assert not _reused(_evaluate(boxes_dataset, _cfg(), tmp_path, caplog), caplog)
    assert "another annotations" in caplog.text


def test_other_vocabulary_is_evaluated_again(boxes_dataset, tmp_path, caplog, monkeypatch):
    _evaluate(boxes_dataset, _cfg(), tmp_path, caplog)

    class RenamedVocabulary(Vocabulary):
        @classmethod
        def from_metadata(cls, metadata):
            vocabulary = Vocabulary.from_metadata(metadata)
            return Vocabulary(tuple(f"a {name}" for name in vocabulary.names), vocabulary.is_thing)

    monkeypatch.setattr(evaluate_module, "Vocabulary", RenamedVocabulary)  # e.g. class names read from a new file
    assert not _reused(_evaluate(boxes_dataset, _cfg(), tmp_path, caplog), caplog)
    assert "another vocabulary" in caplog.text


def test_other_package_version_is_evaluated_again(boxes_dataset, tmp_path, caplog, monkeypatch):
    _evaluate(boxes_dataset, _cfg(), tmp_path, caplog)
    monkeypatch.setattr(evaluate_module, "package_version", lambda: "99.0")
    assert not _reused(_evaluate(boxes_dataset, _cfg(), tmp_path, caplog), caplog)
    assert "another package" in caplog.text


def test_unreadable_results_file_is_evaluated_again(boxes_dataset, tmp_path, caplog):
    _evaluate(boxes_dataset, _cfg(), tmp_path, caplog)
    path = results_path(str(tmp_path), boxes_dataset)
    content = open(path).read()
    with open(path, "w") as handle:
        handle.write(content[: len(content) // 2])  # what a non-atomic writer killed mid-write would leave
    assert not _reused(_evaluate(boxes_dataset, _cfg(), tmp_path, caplog), caplog)
    assert "unreadable" in caplog.text
    assert json.loads(open(path).read())["num_images"] == 3


def test_killed_evaluation_rerun_completes(boxes_dataset, tmp_path, caplog, monkeypatch):
    second = boxes_dataset.replace("_boxes_val", "_odinw_val")
    real_evaluate_dataset = evaluate_module.evaluate_dataset

    def killed_on_second(model, cfg, protocol, output_dir):
        if protocol.dataset == second:
            raise KeyboardInterrupt("killed")
        return real_evaluate_dataset(model, cfg, protocol, output_dir)

    monkeypatch.setattr(evaluate_module, "evaluate_dataset", killed_on_second)
    with pytest.raises(KeyboardInterrupt):
        evaluate(GroundTruthModel(boxes_dataset), _cfg(), [boxes_dataset, second], str(tmp_path))
    assert os.path.isfile(results_path(str(tmp_path), boxes_dataset))
    assert not os.path.exists(results_path(str(tmp_path), second))
    assert not [name for name in os.listdir(tmp_path / boxes_dataset) if name.endswith(".tmp")]
    monkeypatch.undo()
    model = GroundTruthModel(second)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        results = evaluate(model, _cfg(), [boxes_dataset, second], str(tmp_path))
    assert set(results) == {boxes_dataset, second} and len(model.emitted) == 3
    assert f"{boxes_dataset}: re-using stored results" in caplog.text
