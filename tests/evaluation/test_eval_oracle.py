"""The full evaluation path (dataset → test mapper → model outputs → Detectron2 evaluators) with ground-truth stand-in
models: perfect predictions score 100, degraded ones score exactly what pycocotools / lvis / panopticapi give on the
same predictions, empty ones score 0; missing files fail naming them."""

from __future__ import annotations

import contextlib
import io
import json
import os

import numpy as np
import pycocotools.mask as mask_util
import pytest
from detectron2.data import MetadataCatalog
from lvis import LVIS, LVISEval, LVISResults
from panopticapi.evaluation import pq_compute
from panopticapi.utils import id2rgb
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from openseed.data.registration.common import DatasetFilesMissing
from openseed.data.registration.synthetic import register_synthetic_datasets
from openseed.evaluation import evaluate
from tests.evaluation.oracle import EmptyModel, GroundTruthModel

SETS = ("panoptic_val", "ade_val", "boxes_val", "boxes_val_masks", "zeroshot_val", "lvis_val", "odinw_val")
HEADLINE = {"panoptic": [("panoptic_seg", "PQ"), ("panoptic_seg", "PQ_th"), ("panoptic_seg", "PQ_st")],
            "instance": [("bbox", "AP"), ("segm", "AP")], "detection": [("bbox", "AP")],
            "semantic": [("sem_seg", "mIoU")]}


def headline_metrics(dataset: str) -> list[tuple[str, str]]:
    return [pair for task in MetadataCatalog.get(dataset).tasks for pair in HEADLINE[task]]


@pytest.mark.parametrize("key", SETS)
def test_ground_truth_scores_100(key, esyn, tiny_cfg, tmp_path):
    name = f"esyn_{key}"
    model = GroundTruthModel(name)
    results = evaluate(model, tiny_cfg, [name], str(tmp_path))[name]
    for group, metric in headline_metrics(name):
        assert results[group][metric] == pytest.approx(100.0), (group, metric, results[group])
    assert all(v is None or v >= 0 for group in results.values() for v in group.values())  # undefined: None
    if key == "lvis_val":
        assert [results[g][m] for g in ("bbox", "segm") for m in ("APr", "APc", "APf")] == pytest.approx([100.0] * 6)
    vocabulary, tasks = model.bound[0]
    assert vocabulary.names == tuple(MetadataCatalog.get(name).get("stuff_classes") or
                                     MetadataCatalog.get(name).thing_classes)
    assert tasks == frozenset(MetadataCatalog.get(name).tasks)
    assert len(model.emitted) == 3
    for item, _ in model.emitted:  # resized by the test mapper to INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST
        h, w = item["image"].shape[-2:]
        assert min(h, w) == tiny_cfg.INPUT.MIN_SIZE_TEST or max(h, w) == tiny_cfg.INPUT.MAX_SIZE_TEST


# ----------------------------------------------------------------------------------- independent computations
def _category_ids(model: GroundTruthModel) -> dict[int, int]:
    return {index: category for category, index in model.metadata.thing_dataset_id_to_contiguous_id.items()}


def direct_coco_results(model: GroundTruthModel, iou_type: str) -> list[dict]:
    category_of = _category_ids(model)
    results = []
    for item, output in model.emitted:
        instances = output["instances"]
        for i in range(len(instances)):
            record = {"image_id": item["image_id"], "category_id": category_of[int(instances.pred_classes[i])],
                      "score": float(instances.scores[i])}
            if iou_type == "bbox":
                x0, y0, x1, y1 = instances.pred_boxes.tensor[i].tolist()
                record["bbox"] = [x0, y0, x1 - x0, y1 - y0]
            else:
                rle = mask_util.encode(np.asfortranarray(instances.pred_masks[i].numpy().astype(np.uint8)))
                record["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
            results.append(record)
    return results


def direct_coco_ap(model: GroundTruthModel, iou_type: str) -> float:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(model.metadata.json_file)
        coco_eval = COCOeval(gt, gt.loadRes(direct_coco_results(model, iou_type)), iou_type)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return 100 * coco_eval.stats[0]


def direct_lvis_ap(model: GroundTruthModel, iou_type: str, monkeypatch) -> float:
    monkeypatch.setattr(np, "float", float, raising=False)  # lvis 0.5.3 uses the alias numpy removed
    gt = LVIS(model.metadata.json_file)
    lvis_eval = LVISEval(gt, LVISResults(gt, direct_coco_results(model, iou_type), max_dets=300), iou_type)
    with contextlib.redirect_stdout(io.StringIO()):
        lvis_eval.run()
    return 100 * lvis_eval.get_results()["AP"]


def direct_pq(model: GroundTruthModel, folder) -> float:
    meta = model.metadata
    thing_ids = {v: k for k, v in meta.thing_dataset_id_to_contiguous_id.items()}
    stuff_ids = {v: k for k, v in meta.stuff_dataset_id_to_contiguous_id.items()}
    pred_dir = folder / "pred"
    pred_dir.mkdir()
    annotations = []
    for item, output in model.emitted:
        ids, segments = output["panoptic_seg"]
        png = os.path.splitext(os.path.basename(item["file_name"]))[0] + ".png"
        Image.fromarray(id2rgb(ids.numpy())).save(pred_dir / png)
        annotations.append({"image_id": item["image_id"], "file_name": png, "segments_info": [
            {"id": s["id"], "category_id": (thing_ids if s["isthing"] else stuff_ids)[s["category_id"]]}
            for s in segments]})
    with open(meta.panoptic_json, encoding="utf-8") as f:
        gt = json.load(f)
    pred_json = folder / "pred.json"
    pred_json.write_text(json.dumps({**gt, "annotations": annotations}))
    with contextlib.redirect_stdout(io.StringIO()):
        result = pq_compute(meta.panoptic_json, str(pred_json), gt_folder=meta.panoptic_root,
                            pred_folder=str(pred_dir))
    return 100 * result["All"]["pq"]


def direct_miou(model: GroundTruthModel) -> float:
    """Mean over the classes present in the ground truth of |pred ∩ gt| / |pred ∪ gt| (ignored pixels left out)."""
    num_classes = len(model.bound[0][0])
    intersection, union, present = np.zeros(num_classes), np.zeros(num_classes), np.zeros(num_classes, bool)
    for item, output in model.emitted:
        gt = np.asarray(Image.open(item["sem_seg_file_name"]), dtype=np.int64)
        pred = output["sem_seg"].argmax(0).numpy()
        valid = gt != model.metadata.ignore_label
        for c in range(num_classes):
            in_gt, in_pred = (gt == c) & valid, (pred == c) & valid
            intersection[c] += (in_gt & in_pred).sum()
            union[c] += (in_gt | in_pred).sum()
            present[c] |= in_gt.any()
    return 100 * float(np.mean(intersection[present] / union[present]))


@pytest.mark.parametrize("key", ["panoptic_val", "ade_val", "lvis_val", "odinw_val", "boxes_val_masks"])
def test_degraded_predictions_score_what_the_libraries_give(key, esyn, tiny_cfg, tmp_path, monkeypatch):
    name = f"esyn_{key}"
    model = GroundTruthModel(name, degrade=True)
    results = evaluate(model, tiny_cfg, [name], str(tmp_path / "eval"))[name]
    tasks = MetadataCatalog.get(name).tasks
    expected = {}
    if "panoptic" in tasks:
        expected[("panoptic_seg", "PQ")] = direct_pq(model, tmp_path)
    if "semantic" in tasks:
        expected[("sem_seg", "mIoU")] = direct_miou(model)
    iou_types = ["bbox", "segm"] if "instance" in tasks else ["bbox"]
    for iou_type in iou_types:
        if model.metadata.evaluator_type == "lvis":
            expected[(iou_type, "AP")] = direct_lvis_ap(model, iou_type, monkeypatch)
        else:
            expected[(iou_type, "AP")] = direct_coco_ap(model, iou_type)
    for (group, metric), value in expected.items():
        assert 0 < value < 95, f"degradation should lower {group}/{metric}: {value}"
        assert results[group][metric] == pytest.approx(value, abs=1e-9), (group, metric)


@pytest.mark.parametrize("key", ["panoptic_val", "boxes_val", "boxes_val_masks", "lvis_val"])
def test_no_predictions_score_zero(key, esyn, tiny_cfg, tmp_path):
    name = f"esyn_{key}"
    results = evaluate(EmptyModel(), tiny_cfg, [name], str(tmp_path))[name]
    for group, metric in headline_metrics(name):
        if group != "sem_seg":
            assert results[group][metric] == 0.0, (group, metric)
    if "semantic" in MetadataCatalog.get(name).tasks:  # every pixel predicted as class 0
        assert 0.0 <= results["sem_seg"]["mIoU"] < 100.0


def test_missing_dataset_files_fail_naming_the_path(tiny_cfg, tmp_path):
    root = tmp_path / "nowhere" / "synthetic"
    register_synthetic_datasets(str(root), prefix="missingsyn")
    with pytest.raises(DatasetFilesMissing, match=str(root / "panoptic" / "val")):
        evaluate(EmptyModel(), tiny_cfg, ["missingsyn_panoptic_val"], str(tmp_path / "out"))
    with pytest.raises(DatasetFilesMissing, match=str(root / "odinw" / "val")):
        evaluate(EmptyModel(), tiny_cfg, ["missingsyn_odinw_val"], str(tmp_path / "out"))
    assert not (tmp_path / "out" / "missingsyn_odinw_val").exists()


def test_missing_real_dataset_fails_before_any_inference(esyn, tiny_cfg, tmp_path):
    """The LVIS json is checked before the synthetic set listed first is evaluated."""
    model = GroundTruthModel("esyn_odinw_val")
    with pytest.raises(DatasetFilesMissing, match="lvis_v1_minival.json"):
        evaluate(model, tiny_cfg, ["esyn_odinw_val", "lvis_v1_minival"], str(tmp_path))
    assert model.emitted == []
