"""tools/probe_pseudo_masks.py: the measures against true masks, with stand-in predictors of known answers."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from openseed.data.registration.synthetic import register_synthetic_datasets
from openseed.data.synthetic import generate_synthetic_datasets
from tests.tool_loader import load_tool

REPO_ROOT = Path(__file__).resolve().parents[2]


def _tool():
    return load_tool("probe_pseudo_masks")


class _BoxPredictor:
    """Answers each box prompt with the whole box (or, with `truth`, the true masks of the image in order)."""

    def __init__(self, truth=None):
        self.truth = truth

    def segment_boxes(self, file_name, boxes, concepts):
        from PIL import Image

        width, height = Image.open(file_name).size
        if self.truth is not None:
            return SimpleNamespace(pred_masks=torch.from_numpy(np.stack(self.truth[file_name])))
        masks = np.zeros((len(boxes), height, width), dtype=bool)
        for mask, (x0, y0, x1, y1) in zip(masks, boxes):
            mask[int(round(y0)):int(round(y1)), int(round(x0)):int(round(x1))] = True
        return SimpleNamespace(pred_masks=torch.from_numpy(masks))


@pytest.fixture(scope="module")
def probe_set(tmp_path_factory):
    root = generate_synthetic_datasets(str(tmp_path_factory.mktemp("probe") / "abl"), seed=0, num_train=1, num_val=3,
                                       family="ablation")
    register_synthetic_datasets(root, prefix="probe", family="ablation")
    return "probe_boxes_val_masks", root


def test_true_masks_score_one_and_boxes_score_the_box_iou(probe_set):
    from detectron2.data import DatasetCatalog

    probe_set, _root = probe_set
    tool = _tool()
    names = ["red ring", "green cross", "blue blob", "yellow crescent"]
    records = DatasetCatalog.get(probe_set)
    truth = {r["file_name"]: [tool._true_mask(a, r["height"], r["width"]) for a in r["annotations"]] for r in records}
    perfect = tool.summary_rows(probe_set, tool.probe_dataset(_BoxPredictor(truth), probe_set, names))
    assert perfect[-1]["class"] == "all" and perfect[-1]["objects"] == sum(len(v) for v in truth.values())
    assert all(r["iou"] == r["precision"] == r["recall"] == 1.0 for r in perfect)
    boxes = tool.summary_rows(probe_set, tool.probe_dataset(_BoxPredictor(), probe_set, names))
    for row in boxes:
        assert row["iou"] == pytest.approx(row["box_iou"]) and row["recall"] == 1.0 and row["iou"] < 0.7


def test_best_same_class_prediction_per_true_mask(probe_set):
    import json
    import os

    import pycocotools.mask as mask_util

    _name, root = probe_set
    tool = _tool()
    with open(os.path.join(root, "boxes", "val", "instances_masks.json")) as f:
        truth = json.load(f)
    predictions = []
    for ann in truth["annotations"]:
        x, y, w, h = (int(v) for v in ann["bbox"])
        box = np.zeros(ann["segmentation"]["size"], dtype=np.uint8)
        box[y:y + h, x:x + w] = 1
        rle = mask_util.encode(np.asfortranarray(box))
        predictions.append({"image_id": ann["image_id"], "category_id": ann["category_id"], "segmentation": rle,
                            "score": 0.9})
        other = 1 + ann["category_id"] % len(truth["categories"])  # the true mask, but of another class: ignored
        predictions.append({"image_id": ann["image_id"], "category_id": other, "segmentation": ann["segmentation"],
                            "score": 0.8})
    rows = tool.summary_rows("t", tool.best_predictions(predictions, truth))
    assert rows[-1]["objects"] == len(truth["annotations"])
    for row in rows:
        assert row["recall"] == 1.0 and row["iou"] == pytest.approx(row["precision"])
        assert row["iou"] == pytest.approx(row["box_iou"]) and row["iou"] < 0.7
    predictions += [{**p, "category_id": a["category_id"], "segmentation": a["segmentation"]}
                    for p, a in zip(predictions[1::2], truth["annotations"])]
    assert all(r["iou"] == 1.0 for r in tool.summary_rows("t", tool.best_predictions(predictions, truth)))
