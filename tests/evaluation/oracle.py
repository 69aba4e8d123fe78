"""Stand-in models for the evaluation tests: they return a dataset's ground truth (optionally degraded) or nothing,
in the Detectron2 formats of `OpenSeeD`, through the same `bind(vocabulary, task)` interface.

The ground truth is read from the dataset's own files (panoptic PNG + segments of the input dict, semantic PNG,
instance json of the metadata), never from the evaluator. Every output is recorded (`emitted`) so a test can
evaluate the very same predictions with pycocotools / lvis / panopticapi directly.
"""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import torch
from detectron2.data import MetadataCatalog
from detectron2.structures import Boxes, Instances
from panopticapi.utils import rgb2id
from PIL import Image
from pycocotools.coco import COCO

from openseed.modeling.postprocessing import normalize_tasks
from openseed.vocabulary import Vocabulary

MASK_SHIFT = 2  # pixels a degraded mask is moved right
BOX_SHIFT = 4.0  # pixels a degraded box is moved right


class GroundTruthModel:
    """Returns the ground truth of `dataset_name`; `degrade=True` drops every second instance / segment, shifts
    boxes and masks, gives falling scores and shifts the semantic map."""

    def __init__(self, dataset_name: str, degrade: bool = False):
        self.metadata = MetadataCatalog.get(dataset_name)
        self.degrade = degrade
        self.emitted: list[tuple[dict, dict]] = []
        self.bound: list[tuple[Vocabulary, frozenset]] = []
        self._coco = None

    def bind(self, vocabulary: Vocabulary, task):
        tasks = normalize_tasks(task)
        self.bound.append((vocabulary, tasks))
        return lambda batched_inputs: [self._predict(item, vocabulary, tasks) for item in batched_inputs]

    @property
    def instance_gt(self) -> COCO:
        if self._coco is None:
            with contextlib.redirect_stdout(io.StringIO()):
                self._coco = COCO(self.metadata.json_file)
        return self._coco

    def _predict(self, item: dict, vocabulary: Vocabulary, tasks: frozenset) -> dict:
        image = item["image"]
        assert image.dtype == torch.uint8 and image.shape[0] == 3, "the test mapper did not run"
        size = (item["height"], item["width"])
        output = {}
        if "panoptic" in tasks:
            output["panoptic_seg"] = self._panoptic(item)
        if tasks & {"instance", "detection"}:
            output["instances"] = self._instances(item, size, with_masks="instance" in tasks)
        if "semantic" in tasks:
            output["sem_seg"] = self._semantic(item, len(vocabulary))
        self.emitted.append((item, copy.deepcopy(output)))  # evaluators may edit outputs in place
        return output

    def _panoptic(self, item: dict):
        ids = rgb2id(np.asarray(Image.open(item["pan_seg_file_name"]).convert("RGB"), dtype=np.uint32))
        prediction = np.zeros(ids.shape, dtype=np.int32)
        segments = []
        for index, segment in enumerate(item["segments_info"]):
            if self.degrade and index % 2 == 1:
                continue
            new_id = len(segments) + 1
            prediction[ids == segment["id"]] = new_id
            segments.append({"id": new_id, "isthing": bool(segment["isthing"]),
                             "category_id": segment["category_id"]})
        return torch.from_numpy(prediction), segments

    def _instances(self, item: dict, size: tuple[int, int], with_masks: bool) -> Instances:
        thing_index = self.metadata.thing_dataset_id_to_contiguous_id
        annotations = [a for a in self.instance_gt.imgToAnns[item["image_id"]] if a["category_id"] in thing_index]
        if self.degrade:
            annotations = annotations[::2]
        boxes, masks = [], []
        for ann in annotations:
            x, y, w, h = ann["bbox"]
            shift = BOX_SHIFT if self.degrade else 0.0
            boxes.append([x + shift, y, x + w + shift, y + h])
            if with_masks:
                mask = self.instance_gt.annToMask(ann).astype(bool)
                masks.append(np.roll(mask, MASK_SHIFT, axis=1) if self.degrade else mask)
        result = Instances(size)
        result.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
        result.scores = torch.tensor([1.0 - 0.1 * i if self.degrade else 1.0 for i in range(len(annotations))])
        result.pred_classes = torch.tensor([thing_index[a["category_id"]] for a in annotations], dtype=torch.long)
        if with_masks:
            result.pred_masks = torch.from_numpy(np.stack(masks)) if masks else torch.zeros(0, *size, dtype=torch.bool)
        return result

    def _semantic(self, item: dict, num_classes: int) -> torch.Tensor:
        labels = np.asarray(Image.open(item["sem_seg_file_name"]), dtype=np.int64)
        if self.degrade:
            labels = np.roll(labels, 5, axis=1)
        one_hot = torch.zeros(num_classes, *labels.shape)
        valid = labels < num_classes
        rows, cols = np.nonzero(valid)
        one_hot[labels[valid], rows, cols] = 1.0
        return one_hot


class EmptyModel:
    """Predicts nothing: no instances, an all-void panoptic map, all-zero semantic scores."""

    def bind(self, vocabulary: Vocabulary, task):
        tasks = normalize_tasks(task)

        def predict(batched_inputs):
            outputs = []
            for item in batched_inputs:
                size = (item["height"], item["width"])
                output = {}
                if "panoptic" in tasks:
                    output["panoptic_seg"] = (torch.zeros(size, dtype=torch.int32), [])
                if tasks & {"instance", "detection"}:
                    instances = Instances(size)
                    instances.pred_boxes = Boxes(torch.zeros(0, 4))
                    instances.scores = torch.zeros(0)
                    instances.pred_classes = torch.zeros(0, dtype=torch.long)
                    if "instance" in tasks:
                        instances.pred_masks = torch.zeros(0, *size, dtype=torch.bool)
                    output["instances"] = instances
                if "semantic" in tasks:
                    output["sem_seg"] = torch.zeros(len(vocabulary), *size)
                outputs.append(output)
            return outputs

        return predict
