"""Frozen zero-shot evaluation protocols (docs/official_behaviours.md §9.5, §10.4, §10.6): how each dataset is evaluated.

A protocol fixes, per dataset: the test-time resize (short side, long-side limit, interpolation), the detection limit
the metric uses (COCO API `maxDets` 100, LVIS 300), the vocabulary (the dataset's own class names from its metadata,
`Vocabulary.from_metadata`), prompt ensembling of the text embeddings and the tasks evaluated (the dataset's metadata
`tasks`, docs/official_behaviours.md §9.5 table). Rules are matched by dataset-name prefix, first match wins; datasets no rule names
(custom COCO jsons) and the synthetic sets use the config's `INPUT.MIN_SIZE_TEST` / `MAX_SIZE_TEST`.

    protocol = protocol_for("ade20k_panoptic_val", cfg)
    protocol.min_size, protocol.max_size, protocol.tasks  # 640, 2560, ("panoptic", "instance", "semantic")
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from detectron2.data import DatasetCatalog, MetadataCatalog

from openseed.data.mappers.test_mapper import INTERPOLATIONS
from openseed.data.registration.common import closest_registered_names
from openseed.modeling.postprocessing import normalize_tasks

COCO_MAX_DETECTIONS = 100  # COCO API default maxDets (COCO, ADE, ODinW, SegInW, Objects365)
LVIS_MAX_DETECTIONS = 300  # LVIS API default (docs/official_behaviours.md §10.5)
VOCABULARY_SOURCE = "metadata"  # the evaluated dataset's own class names (docs/official_behaviours.md §10.6)


@dataclass(frozen=True)
class SizeRule:
    """Test-time resize of a group of datasets; `None` sizes come from the config (INPUT.*_SIZE_TEST)."""

    min_size: int | None
    max_size: int | None
    interpolation: str = "bilinear"
    source: str = "config"


_CONFIG_SIZES = SizeRule(None, None)
# (dataset-name prefixes, resize) — docs/official_behaviours.md §10.4 table; first match wins.
SIZE_RULES: tuple[tuple[tuple[str, ...], SizeRule], ...] = (
    (("coco_",), SizeRule(800, 1333, source="docs/official_behaviours.md §10.4 [CODE]")),
    (("objects365_",), SizeRule(800, 1333, source="docs/official_behaviours.md §10.4 [CODE]")),
    (("ade20k_",), SizeRule(640, 2560, source="docs/official_behaviours.md §10.4 [CODE]")),
    (("cityscapes_",), SizeRule(1024, 2048, source="docs/official_behaviours.md §10.4 [CODE]")),
    (("bdd10k_",), SizeRule(800, 0, "bicubic", source="docs/official_behaviours.md §10.4 [CODE]")),
    (("scannet_", "sunrgbd_"), SizeRule(512, 0, "bicubic", source="docs/official_behaviours.md §10.4 [CODE]")),
    (("lvis_", "odinw13_", "odinw35_", "seginw_"), SizeRule(800, 1333, source="docs/official_behaviours.md §10.4 [DESIGN]")),
    (("pascal_context_",), SizeRule(640, 2560, source="ADE20K convention [DESIGN]")),
    (("synthetic_",), _CONFIG_SIZES),
)


@dataclass(frozen=True)
class DatasetProtocol:
    """Everything that defines how one dataset is evaluated (stored with its results).

    Attributes:
        dataset: registered dataset name.
        tasks: model/evaluator tasks, a subset of panoptic, instance, semantic, detection (metadata `tasks`).
        evaluator_type: the metadata's `evaluator_type` (selects COCO / LVIS / Cityscapes evaluators).
        min_size, max_size: test resize of the short side / limit of the long side (≤ 0: no limit).
        interpolation: "bilinear" or "bicubic" (image resize of the test mapper).
        size_source: where the sizes come from ("config" or the docs/official_behaviours.md section).
        max_detections: detections per image the metric considers (COCO API maxDets / LVIS max_dets).
        prompt_ensemble: text embeddings are the prompt-template ensemble (docs/official_behaviours.md §4.3) — `MODEL.TEXT.EVAL_PROMPT_ENSEMBLE`;
            the paper protocol has it on, and `evaluate` warns when a config turns it off.
        vocabulary_source: "metadata" = the dataset's own class names (`Vocabulary.from_metadata`).
    """

    dataset: str
    tasks: tuple[str, ...]
    evaluator_type: str
    min_size: int
    max_size: int
    interpolation: str
    size_source: str
    max_detections: int
    prompt_ensemble: bool
    vocabulary_source: str = VOCABULARY_SOURCE

    def __post_init__(self):
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"dataset {self.dataset!r}: interpolation {self.interpolation!r} is not one of "
                             f"{sorted(INTERPOLATIONS)}")
        if self.min_size <= 0:
            raise ValueError(f"dataset {self.dataset!r}: test min_size must be positive, got {self.min_size}")
        normalize_tasks(self.tasks)

    @property
    def computes_masks(self) -> bool:
        """False for detection-only datasets: the model then skips mask prediction entirely (docs/official_behaviours.md §9.4)."""
        return self.tasks != ("detection",)

    def as_dict(self) -> dict:
        """JSON-ready copy (tuples become lists), stored in the results file and compared on re-use."""
        record = asdict(self)
        record["tasks"] = list(self.tasks)
        return record


def size_rule(dataset_name: str) -> SizeRule:
    for prefixes, rule in SIZE_RULES:
        if dataset_name.startswith(prefixes):
            return rule
    return _CONFIG_SIZES


def protocol_for(dataset_name: str, cfg) -> DatasetProtocol:
    """The protocol of a registered dataset (metadata `tasks`, `evaluator_type`; sizes by name; config fallbacks).

    Raises KeyError for a dataset name that is not registered, ValueError for metadata without `tasks`.
    """
    if dataset_name not in DatasetCatalog.list():
        raise KeyError(f"dataset {dataset_name!r} is not registered; closest registered names: "
                       f"{closest_registered_names(dataset_name) or 'none'} (see datasets/README.md)")
    metadata = MetadataCatalog.get(dataset_name)
    tasks = tuple(getattr(metadata, "tasks", ()) or ())
    if not tasks:
        raise ValueError(f"dataset {dataset_name!r}: its metadata has no `tasks`; register it through "
                         "openseed.data.registration (or DATASETS.CUSTOM) so the evaluation knows what to measure")
    evaluator_type = getattr(metadata, "evaluator_type", "coco")
    rule = size_rule(dataset_name)
    return DatasetProtocol(
        dataset=dataset_name,
        tasks=tasks,
        evaluator_type=evaluator_type,
        min_size=int(cfg.INPUT.MIN_SIZE_TEST if rule.min_size is None else rule.min_size),
        max_size=int(cfg.INPUT.MAX_SIZE_TEST if rule.max_size is None else rule.max_size),
        interpolation=rule.interpolation,
        size_source=rule.source,
        max_detections=LVIS_MAX_DETECTIONS if evaluator_type == "lvis" else COCO_MAX_DETECTIONS,
        prompt_ensemble=bool(cfg.MODEL.TEXT.EVAL_PROMPT_ENSEMBLE),
    )
