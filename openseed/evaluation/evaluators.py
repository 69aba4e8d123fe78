"""Detectron2 evaluators for one dataset, chosen from its protocol (tasks, evaluator type) and metadata.

| task | evaluator | metric library |
|---|---|---|
| panoptic | `COCOPanopticEvaluator` | panopticapi (PQ, SQ, RQ; things / stuff) |
| instance, detection | `VocabularyCOCOEvaluator` (boxes, + masks for instance) | pycocotools (COCO API) |
| instance on `evaluator_type` "lvis" | `VocabularyLVISEvaluator` | lvis (AP, APr/APc/APf; 300 dets/image) |
| instance on "cityscapes_instance" | `CityscapesInstanceEvaluator` | cityscapesScripts (only when importable) |
| semantic | `VocabularySemSegEvaluator` | Detectron2's `SemSegEvaluator` (mIoU, fwIoU, mACC, pACC) |

No metric is computed here: the subclasses only translate the model's class indices (positions in the dataset's
`Vocabulary.from_metadata`) to the annotation files' category ids, and give the libraries' own value for a prediction
set without a single detection (the libraries refuse an empty result list; AP is then 0 where ground truth exists).
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import logging

import numpy as np
import torch
from detectron2.data import MetadataCatalog
from detectron2.data.catalog import Metadata
from detectron2.evaluation import (
    COCOEvaluator,
    COCOPanopticEvaluator,
    DatasetEvaluator,
    DatasetEvaluators,
    LVISEvaluator,
    SemSegEvaluator,
)
from detectron2.evaluation.coco_evaluation import COCOevalMaxDets
from lvis import LVIS, LVISEval, LVISResults
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from openseed.data.registration.common import require_files
from openseed.vocabulary import Vocabulary

from .protocols import DatasetProtocol

logger = logging.getLogger(__name__)

LVIS_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")
# metadata keys naming the files each task's evaluator reads
_EVALUATOR_FILES = {"panoptic": ("panoptic_json", "panoptic_root"), "instance": ("json_file",),
                    "detection": ("json_file",)}


class EvaluatorUnavailable(RuntimeError):
    """The evaluator a dataset's protocol needs cannot run here (e.g. cityscapesScripts is not installed)."""


def check_evaluable(protocol: DatasetProtocol) -> None:
    """Fail early, before any inference, when a dataset's evaluator files or packages are missing.

    Raises `DatasetFilesMissing` naming the missing annotation files, `EvaluatorUnavailable` for a missing package.
    """
    metadata = MetadataCatalog.get(protocol.dataset)
    if protocol.evaluator_type == "cityscapes_instance" and ({"instance", "detection"} & set(protocol.tasks)):
        if importlib.util.find_spec("cityscapesscripts") is None:
            raise EvaluatorUnavailable(
                f"dataset {protocol.dataset!r}: Cityscapes instance AP needs the official cityscapesScripts "
                "evaluator; install it with `pip install cityscapesscripts`"
            )
        return
    keys = sorted({key for task in protocol.tasks for key in _EVALUATOR_FILES.get(task, ())})
    absent = [key for key in keys if not getattr(metadata, key, None)]
    if absent:
        raise ValueError(f"dataset {protocol.dataset!r}: its metadata lacks {absent}, which the evaluation of "
                         f"{list(protocol.tasks)} needs")
    require_files(protocol.dataset, *(getattr(metadata, key) for key in keys))


def build_evaluator(protocol: DatasetProtocol, output_dir: str | None, distributed: bool = True) -> DatasetEvaluator:
    """All evaluators of one dataset as one `DatasetEvaluators`; results are keyed `panoptic_seg`, `bbox`,
    `segm`, `sem_seg`. Build it after the dataset is loaded: loading sets the json category id maps of some sets."""
    check_evaluable(protocol)
    name, tasks = protocol.dataset, set(protocol.tasks)
    evaluators: list[DatasetEvaluator] = []
    if "panoptic" in tasks:
        evaluators.append(COCOPanopticEvaluator(name, output_dir))
    if tasks & {"instance", "detection"}:
        iou_types = ("bbox", "segm") if "instance" in tasks else ("bbox",)
        if protocol.evaluator_type == "lvis":
            evaluators.append(VocabularyLVISEvaluator(name, tasks=iou_types, distributed=distributed,
                                                      output_dir=output_dir,
                                                      max_dets_per_image=protocol.max_detections))
        elif protocol.evaluator_type == "cityscapes_instance":
            from detectron2.evaluation import CityscapesInstanceEvaluator

            evaluators.append(CityscapesInstanceEvaluator(name))
        else:
            evaluators.append(VocabularyCOCOEvaluator(name, tasks=iou_types, distributed=distributed,
                                                      output_dir=output_dir,
                                                      max_dets_per_image=protocol.max_detections))
    if "semantic" in tasks:
        evaluators.append(VocabularySemSegEvaluator(name, distributed=distributed, output_dir=output_dir))
    return DatasetEvaluators(evaluators)


def _vocabulary_to_category_ids(dataset_name: str) -> dict[int, int]:
    """{vocabulary index: json category id} of the thing classes (metadata `thing_dataset_id_to_contiguous_id`)."""
    metadata = MetadataCatalog.get(dataset_name)
    id_map = getattr(metadata, "thing_dataset_id_to_contiguous_id", None)
    if not id_map:
        raise ValueError(f"dataset {dataset_name!r}: metadata has no thing_dataset_id_to_contiguous_id; it is set "
                         "when the dataset is loaded (DatasetCatalog.get) or registered")
    return {index: category for category, index in id_map.items()}


class VocabularyCOCOEvaluator(COCOEvaluator):
    """`COCOEvaluator` (official pycocotools) for predictions whose `pred_classes` index the dataset vocabulary.

    Panoptic datasets' vocabularies hold stuff classes too, and their thing ids need not be 0..T-1 (ADE20K), which
    Detectron2's evaluator assumes: predictions are re-indexed to the thing classes (stuff-class predictions have no
    category in the instance json and are dropped). Per-category AP is named by the json's own category order.
    """

    def __init__(self, dataset_name: str, *, tasks, distributed: bool, output_dir: str | None,
                 max_dets_per_image: int):
        super().__init__(dataset_name, tasks=tasks, distributed=distributed, output_dir=output_dir,
                         max_dets_per_image=max_dets_per_image, use_fast_impl=False)
        dataset_metadata = self._metadata
        names = Vocabulary.from_metadata(dataset_metadata).names
        category_of = _vocabulary_to_category_ids(dataset_name)
        vocab_indices = sorted(category_of)
        lookup = torch.full((len(names),), -1, dtype=torch.long)
        lookup[vocab_indices] = torch.arange(len(vocab_indices))
        self._thing_rank_of_class = lookup
        json_names = {c["id"]: c["name"] for c in self._coco_api.loadCats(self._coco_api.getCatIds())}
        self._category_names = {**json_names, **{category_of[i]: names[i] for i in vocab_indices}}
        self._metadata = Metadata(
            name=f"{dataset_name} (evaluation: thing classes)",
            json_file=dataset_metadata.json_file,
            thing_classes=[names[i] for i in vocab_indices],
            thing_dataset_id_to_contiguous_id={category_of[i]: rank for rank, i in enumerate(vocab_indices)},
        )

    def process(self, inputs, outputs):
        super().process(inputs, [self._to_thing_ranks(output) for output in outputs])

    def _to_thing_ranks(self, output: dict) -> dict:
        if "instances" not in output:
            return output
        instances = output["instances"]
        ranks = self._thing_rank_of_class.to(instances.pred_classes.device)[instances.pred_classes]
        instances = instances[ranks >= 0]
        instances.pred_classes = ranks[ranks >= 0]
        return {**output, "instances": instances}

    def _derive_coco_results(self, coco_eval, iou_type, class_names=None):
        if coco_eval is None and self._do_evaluation:
            coco_eval = self._evaluate_without_detections(iou_type)
        names = [self._category_names[c] for c in sorted(self._coco_api.getCatIds())]
        return super()._derive_coco_results(coco_eval, iou_type, class_names=names)

    def _evaluate_without_detections(self, iou_type: str) -> COCOeval:
        """pycocotools on an empty detection set (its `loadRes` rejects an empty list)."""
        detections = COCO()
        detections.dataset = {key: copy.deepcopy(self._coco_api.dataset[key]) for key in ("images", "categories")}
        detections.dataset["annotations"] = []
        with contextlib.redirect_stdout(io.StringIO()):
            detections.createIndex()
            evaluator_class = COCOeval if self._max_dets_per_image[2] == 100 else COCOevalMaxDets
            coco_eval = evaluator_class(self._coco_api, detections, iou_type)
            coco_eval.params.maxDets = self._max_dets_per_image
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
        logger.warning(f"{iou_type}: no detections at all; COCO API metrics of an empty detection set")
        return coco_eval


@contextlib.contextmanager
def _numpy_float_alias():
    """lvis 0.5.3 (the latest release) still calls `np.float`, removed in numpy 1.24; restore the alias (= float,
    as numpy defined it) while the LVIS API runs."""
    added = "float" not in np.__dict__
    if added:
        np.float = float
    try:
        yield
    finally:
        if added:
            del np.float


class VocabularyLVISEvaluator(LVISEvaluator):
    """`LVISEvaluator` (official lvis API, `max_dets_per_image` 300) that also runs with current numpy and reports
    the API's values for an empty detection set (0 AP where ground truth exists) instead of NaN."""

    def evaluate(self):
        """Detectron2's results, with the API's "undefined" (-1, e.g. APl without large objects) as NaN like COCO."""
        with _numpy_float_alias():
            results = super().evaluate()
        for metrics in (results or {}).values():
            metrics.update({key: float("nan") for key, value in metrics.items() if value < 0})
        return results

    def _eval_predictions(self, predictions):
        if not self._do_evaluation or any(p.get("instances") for p in predictions):
            super()._eval_predictions(predictions)
            return
        for iou_type in self._tasks:
            lvis_eval = LVISEval(self._lvis_api, EmptyLVISResults(self._lvis_api), iou_type)
            with contextlib.redirect_stdout(io.StringIO()):
                lvis_eval.run()
            values = lvis_eval.get_results()
            self._results[iou_type] = {metric: float(values[metric] * 100) for metric in LVIS_METRICS}
        logger.warning("LVIS: no detections at all; LVIS API metrics of an empty detection set")


class EmptyLVISResults(LVISResults):
    """LVIS results without a single detection (`LVISResults.__init__` reads the first result)."""

    def __init__(self, lvis_gt: LVIS):
        self.dataset = copy.deepcopy(lvis_gt.dataset)
        self.dataset["annotations"] = []
        self.logger = logging.getLogger(__name__)
        self._create_index()


class VocabularySemSegEvaluator(SemSegEvaluator):
    """Detectron2's `SemSegEvaluator` (metadata `stuff_classes`, `ignore_label`); for panoptic datasets, whose
    `stuff_dataset_id_to_contiguous_id` lists stuff only, the dumped json maps thing classes through the thing id
    map too (Detectron2's evaluator expects every class in the stuff map)."""

    def __init__(self, dataset_name: str, *, distributed: bool, output_dir: str | None):
        super().__init__(dataset_name, distributed=distributed, output_dir=output_dir)
        metadata = MetadataCatalog.get(dataset_name)
        id_map = {**(getattr(metadata, "thing_dataset_id_to_contiguous_id", None) or {}),
                  **(getattr(metadata, "stuff_dataset_id_to_contiguous_id", None) or {})}
        self._contiguous_id_to_dataset_id = {v: k for k, v in id_map.items()} if id_map else None
