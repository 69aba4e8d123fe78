"""`evaluate`: stored results re-used unless forced or stale, the results file, and the tiny OpenSeeD model's calls
(detection-only datasets never compute masks, one text embedding per vocabulary, eval mode kept)."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from detectron2.data import MetadataCatalog
from detectron2.modeling import build_model

import openseed.modeling  # noqa: F401  (registers the meta-architecture)
from openseed.config import setup_cfg
from openseed.evaluation import evaluate, results_path
from openseed.vocabulary import Vocabulary
from tests.evaluation.conftest import TINY_CONFIG
from tests.evaluation.oracle import GroundTruthModel


def test_stored_results_are_reused_unless_forced(esyn, tiny_cfg, tmp_path, caplog):
    name = "esyn_boxes_val"
    first = GroundTruthModel(name, degrade=True)
    results = evaluate(first, tiny_cfg, [name], str(tmp_path))
    path = results_path(str(tmp_path), name)
    record = json.loads(open(path).read())
    assert record["results"] == results[name] and record["num_images"] == 3
    assert record["protocol"]["tasks"] == ["detection"] and record["protocol"]["min_size"] == 128

    again = GroundTruthModel(name, degrade=True)
    with caplog.at_level(logging.INFO, logger="openseed.evaluation.evaluate"):
        reused = evaluate(again, tiny_cfg, [name], str(tmp_path))
    assert reused == results
    assert again.emitted == [] and again.bound == []
    assert "re-using stored results" in caplog.text
    assert json.loads(open(path).read())["created"] == record["created"]

    forced = GroundTruthModel(name)
    forced_results = evaluate(forced, tiny_cfg, [name], str(tmp_path), force=True)
    assert len(forced.emitted) == 3
    assert forced_results[name]["bbox"]["AP"] == pytest.approx(100.0) != results[name]["bbox"]["AP"]
    assert json.loads(open(path).read())["results"] == forced_results[name]


def test_results_of_another_protocol_or_weights_are_not_reused(esyn, tiny_cfg, tmp_path):
    name = "esyn_odinw_val"
    evaluate(GroundTruthModel(name), tiny_cfg, [name], str(tmp_path))
    other_size = setup_cfg(TINY_CONFIG, ["INPUT.MIN_SIZE_TEST", "96"])
    model = GroundTruthModel(name)
    evaluate(model, other_size, [name], str(tmp_path))
    assert len(model.emitted) == 3
    assert json.loads(open(results_path(str(tmp_path), name)).read())["protocol"]["min_size"] == 96

    weights = tmp_path / "weights.pth"
    weights.write_bytes(b"stand-in")
    with_weights = setup_cfg(TINY_CONFIG, ["INPUT.MIN_SIZE_TEST", "96", "MODEL.WEIGHTS", str(weights)])
    model = GroundTruthModel(name)
    evaluate(model, with_weights, [name], str(tmp_path))
    assert len(model.emitted) == 3
    assert json.loads(open(results_path(str(tmp_path), name)).read())["weights"]["path"] == str(weights)


def test_unknown_dataset_is_rejected_by_name(tiny_cfg, tmp_path):
    with pytest.raises(KeyError, match="no_such_dataset"):
        evaluate(GroundTruthModel("esyn_odinw_val"), tiny_cfg, ["no_such_dataset"], str(tmp_path))


@pytest.fixture(scope="module")
def tiny_model(tiny_cfg):
    torch.manual_seed(0)
    return build_model(tiny_cfg).eval()


def test_tiny_model_tasks_masks_and_text_embeddings(esyn, tiny_cfg, tiny_model, tmp_path, monkeypatch):
    decoder_tasks, embedded = [], []
    head_forward = tiny_model.sem_seg_head.forward

    def recording_head(*args, **kwargs):
        outputs = head_forward(*args, **kwargs)
        decoder_tasks.append((kwargs.get("task"), "pred_masks" in outputs))
        return outputs

    lang_encoder = tiny_model.lang_encoder
    ensemble = lang_encoder._ensemble_embeddings

    def recording_ensemble(names):
        embedded.append(names)
        return ensemble(names)

    monkeypatch.setattr(tiny_model.sem_seg_head, "forward", recording_head)
    monkeypatch.setattr(lang_encoder, "_ensemble_embeddings", recording_ensemble)
    lang_encoder.clear_cache()
    names = ["esyn_boxes_val", "esyn_boxes_val_masks", "esyn_panoptic_val"]
    results = evaluate(tiny_model, tiny_cfg, names, str(tmp_path))

    assert decoder_tasks == [("det", False)] * 3 + [("seg", True)] * 6
    assert sorted(results) == sorted(names)
    assert set(results["esyn_boxes_val"]) == {"bbox"} and set(results["esyn_boxes_val_masks"]) == {"bbox", "segm"}
    assert set(results["esyn_panoptic_val"]) == {"panoptic_seg", "bbox", "segm", "sem_seg"}
    # one embedding per vocabulary: boxes (shared by boxes_val and boxes_val_masks), then panoptic
    vocabularies = [Vocabulary.from_metadata(MetadataCatalog.get(n)).names for n in names[1:]]
    assert embedded == vocabularies
    assert not tiny_model.training and not any(m.training for m in tiny_model.modules())

