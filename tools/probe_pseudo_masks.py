#!/usr/bin/env python
"""Quality of conditioned mask decoding (the pseudo-masks of Objects365 mask assistance) against true masks.

    python tools/probe_pseudo_masks.py --config-file configs/tiny/tiny_ablation.yaml \\
        --weights output/ablations/mask_assist/with_assist/seed0/train/model_final.pth \\
        --datasets synabl_boxes_val_masks synabl_zeroshot_val --output probe.json

For every annotated object of each dataset (which must have masks) the model decodes one mask from the GT box and
the GT class name (`Predictor.segment_boxes`: the clean conditioned query that mask assistance thresholds into a
pseudo-mask in training, at the evaluation resolution) and compares it with the true mask: IoU, precision (the
share of the decoded mask on the object) and recall, per class and overall; the IoU of the whole box taken as the
mask is the reference of a box-only guess. Prints a markdown table and writes the numbers as json.

    python tools/probe_pseudo_masks.py --predictions EVAL_DIR/synabl_boxes_val_masks/coco_instances_results.json \
        --gt-json datasets/synthetic_ablation/boxes/val/instances_masks.json

measures instead the model's own predicted masks (the evaluation's dump): per true object, the same-class prediction
of highest IoU (its precision and recall alongside), the student that mask assistance trains on the pseudo-masks.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import pycocotools.mask as mask_util
from detectron2.data import DatasetCatalog
from detectron2.structures import BoxMode

import openseed.data  # noqa: F401  (registers the datasets)
from openseed.data.registration.common import resolve_metadata
from openseed.predictor import Predictor
from openseed.utils.cli import FlagsAnywhereParser


def _true_mask(annotation: dict, height: int, width: int) -> np.ndarray:
    segmentation = annotation["segmentation"]
    if isinstance(segmentation, list):
        segmentation = mask_util.merge(mask_util.frPyObjects(segmentation, height, width))
    return mask_util.decode(segmentation).astype(bool)


def probe_dataset(predictor: Predictor, dataset: str, class_names: list[str]) -> dict[str, list[dict]]:
    """{class name: [{"iou", "precision", "recall", "box_iou"} per object]} of one dataset."""
    per_class: dict[str, list[dict]] = {}
    for record in DatasetCatalog.get(dataset):
        annotations = record["annotations"]
        if not annotations:
            continue
        if any("segmentation" not in a for a in annotations):
            raise ValueError(f"{dataset}: {record['file_name']} has annotations without masks; probe a mask dataset")
        height, width = record["height"], record["width"]
        boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in annotations]
        names = [class_names[a["category_id"]] for a in annotations]
        decoded = predictor.segment_boxes(record["file_name"], boxes, concepts=names).pred_masks.cpu().numpy()
        for annotation, box, name, mask in zip(annotations, boxes, names, decoded):
            truth = _true_mask(annotation, height, width)
            x0, y0, x1, y1 = (int(round(v)) for v in box)
            box_mask = np.zeros_like(truth)
            box_mask[y0:y1, x0:x1] = True
            overlap = float((mask & truth).sum())
            per_class.setdefault(name, []).append({
                "iou": overlap / max(float((mask | truth).sum()), 1.0),
                "precision": overlap / max(float(mask.sum()), 1.0),
                "recall": overlap / max(float(truth.sum()), 1.0),
                "box_iou": float((box_mask & truth).sum()) / max(float((box_mask | truth).sum()), 1.0),
            })
    return per_class


def best_predictions(predictions: list[dict], ground_truth: dict) -> dict[str, list[dict]]:
    """{class name: [{"iou", "precision", "recall", "box_iou"} per true object]} of the same-class predicted mask
    (COCO results with RLE `segmentation`) of highest IoU with each true mask of a COCO instances json; objects
    without any same-class prediction are left out."""
    names = {c["id"]: c["name"] for c in ground_truth["categories"]}
    by_image: dict[int, list[dict]] = {}
    for prediction in predictions:
        by_image.setdefault(prediction["image_id"], []).append(prediction)
    per_class: dict[str, list[dict]] = {}
    for annotation in ground_truth["annotations"]:
        truth = mask_util.decode(annotation["segmentation"]).astype(bool)
        x, y, w, h = annotation["bbox"]
        best = None
        for prediction in by_image.get(annotation["image_id"], []):
            if prediction["category_id"] != annotation["category_id"]:
                continue
            mask = mask_util.decode(prediction["segmentation"]).astype(bool)
            overlap = float((mask & truth).sum())
            iou = overlap / max(float((mask | truth).sum()), 1.0)
            if best is None or iou > best["iou"]:
                best = {"iou": iou, "precision": overlap / max(float(mask.sum()), 1.0),
                        "recall": overlap / max(float(truth.sum()), 1.0), "box_iou": float(truth.sum()) / (w * h)}
        if best is not None:
            per_class.setdefault(names[annotation["category_id"]], []).append(best)
    return per_class


def summary_rows(dataset: str, per_class: dict[str, list[dict]]) -> list[dict]:
    """Mean of each measure per class and over all objects of the dataset."""
    groups = list(per_class.items()) + [("all", [o for objects in per_class.values() for o in objects])]
    return [{"dataset": dataset, "class": name, "objects": len(objects),
             **{key: float(np.mean([o[key] for o in objects])) for key in ("iou", "precision", "recall", "box_iou")}}
            for name, objects in groups if objects]


def main(argv: list[str] | None = None) -> list[dict]:
    parser = FlagsAnywhereParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", help="config of the model whose conditioned masks are probed")
    parser.add_argument("--weights", help="its weights")
    parser.add_argument("--predictions", help="instead: an evaluation's coco_instances_results.json to measure")
    parser.add_argument("--gt-json", help="with --predictions: the COCO instances json with the true masks")
    parser.add_argument("--datasets", nargs="+", default=["synabl_boxes_val_masks", "synabl_zeroshot_val"])
    parser.add_argument("--output", default="", help="json file of the rows (optional)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args(argv)
    rows = []
    if args.predictions:
        if not args.gt_json:
            parser.error("--predictions needs --gt-json")
        with open(args.predictions, encoding="utf-8") as f, open(args.gt_json, encoding="utf-8") as g:
            rows = summary_rows(os.path.basename(args.gt_json), best_predictions(json.load(f), json.load(g)))
    else:
        if not (args.config_file and args.weights):
            parser.error("give --config-file and --weights (or --predictions and --gt-json)")
        predictor = Predictor(args.config_file, args.weights, opts=args.opts)
        for dataset in args.datasets:
            class_names = list(resolve_metadata(dataset).thing_classes)
            rows += summary_rows(dataset, probe_dataset(predictor, dataset, class_names))
    print("| dataset | class | objects | IoU | precision | recall | box-as-mask IoU (truth area / box area) |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['dataset']} | {r['class']} | {r['objects']} | {r['iou']:.3f} | {r['precision']:.3f} | "
              f"{r['recall']:.3f} | {r['box_iou']:.3f} |")
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=2)
    return rows


if __name__ == "__main__":
    main()
