"""`evaluate(model, cfg, dataset_names, output_dir)`: zero-shot evaluation of one model on registered datasets.

Per dataset (in order): load its dicts (a missing file raises `DatasetFilesMissing` naming it), take its vocabulary
from the metadata (`Vocabulary.from_metadata` on `resolve_metadata`, class names read from the dataset's files where
needed), build its protocol (`protocols.protocol_for`) and evaluators (`evaluators.build_evaluator`), resize with the
protocol's test mapper and run Detectron2's `inference_on_dataset` on `model.bind(vocabulary, tasks)` (the model
embeds a vocabulary once and caches it; detection-only datasets ask for `("detection",)`, so no masks are computed),
under autocast when `TEST.AMP` asks for it on CUDA.

Files under `output_dir/<dataset>/`: `results.json` (metrics, image count and the fingerprint of what made them:
protocol, config, weights content, annotation files, vocabulary, package version; `evaluation.fingerprint`),
written atomically, plus the evaluators' own dumps. A dataset whose `results.json` has an equal fingerprint is not
evaluated again unless `force=True`: its stored metrics are returned and the log says so; otherwise the log names
the parts (and config keys) that differ and the dataset is evaluated again. A killed evaluation leaves no partial
`results.json`, so re-running it evaluates what was missing. Works in every process of a multi-process run
(the re-use decision is the main process's); metrics are returned on the main process, `{}` elsewhere.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import math
import os
from collections.abc import Iterable, Mapping

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog, build_detection_test_loader
from detectron2.evaluation import inference_on_dataset
from detectron2.utils import comm
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from openseed.checkpoint.io import atomic_write
from openseed.data.mappers.test_mapper import TestMapper
from openseed.data.registration.common import resolve_metadata
from openseed.utils.amp import autocast_dtype
from openseed.vocabulary import Vocabulary

from .evaluators import build_evaluator, check_evaluable
from .fingerprint import (
    PARTS,
    annotation_fingerprint,
    differences,
    flat_config,
    package_version,
    vocabulary_fingerprint,
    weights_fingerprint,
    with_current_citations,
)
from .protocols import DatasetProtocol, protocol_for

logger = logging.getLogger(__name__)

RESULTS_FILE = "results.json"


def results_path(output_dir: str, dataset_name: str) -> str:
    return os.path.join(output_dir, dataset_name, RESULTS_FILE)


def evaluate(model, cfg, dataset_names: Iterable[str], output_dir: str, force: bool = False) -> dict:
    """Evaluate `model` on each dataset; returns `{dataset: {"panoptic_seg"|"bbox"|"segm"|"sem_seg": {metric: v}}}`.

    Args:
        model: an `OpenSeeD` (or anything with `bind(vocabulary, task) -> callable(batched_inputs)` returning
            Detectron2-format outputs), possibly wrapped in DistributedDataParallel.
        cfg: the config (INPUT.*_SIZE_TEST, INPUT.FORMAT, TEST.IMS_PER_GPU, DATALOADER.NUM_WORKERS, MODEL.WEIGHTS;
            all result-relevant keys enter the results' fingerprint).
        dataset_names: registered dataset names (duplicates evaluated once).
        output_dir: results go to `output_dir/<dataset>/results.json`.
        force: re-evaluate datasets that already have stored results.
    Metric values are floats; a metric a library cannot compute (NaN) is None.
    """
    if isinstance(model, DistributedDataParallel):
        model = model.module
    names = list(dict.fromkeys(dataset_names))
    protocols = {name: protocol_for(name, cfg) for name in names}
    main = comm.is_main_process()
    if main:
        weights = weights_fingerprint(cfg.MODEL.WEIGHTS, model)
        if cfg.MODEL.ADAPTER_WEIGHTS:
            weights["adapter"] = weights_fingerprint(cfg.MODEL.ADAPTER_WEIGHTS)
        fingerprints = {name: result_fingerprint(cfg, protocols[name], weights) for name in names}
    reusable = _main_process_decision(lambda: [] if force else [
        name for name in names if _stored_results(output_dir, name, fingerprints[name]) is not None])
    to_evaluate = [name for name in names if name not in reusable]
    for name in to_evaluate:
        check_evaluable(protocols[name])
    if to_evaluate and not cfg.MODEL.TEXT.EVAL_PROMPT_ENSEMBLE:
        logger.warning("MODEL.TEXT.EVAL_PROMPT_ENSEMBLE is off: the zero-shot protocol embeds classes with the "
                       "prompt-template ensemble (docs/official_behaviours.md §4.3); results are stored with prompt_ensemble=false")

    results = {}
    for name in tqdm(names, desc="datasets", unit="dataset", disable=not main or len(names) < 2, position=0):
        if name in reusable:
            if main:
                path = results_path(output_dir, name)
                logger.info(f"{name}: re-using stored results from {path} (same {', '.join(PARTS)}; --force "
                            "re-runs)")
                results[name] = _stored_results(output_dir, name, fingerprints[name])["results"]
            continue
        metrics, num_images = evaluate_dataset(model, cfg, protocols[name], os.path.join(output_dir, name))
        if main:
            results[name] = json_ready(metrics)
            _write_results(output_dir, name, fingerprints[name], results[name], num_images)
    return results if main else {}


def evaluate_dataset(model, cfg, protocol: DatasetProtocol, output_dir: str) -> tuple[dict, int]:
    """Run inference and the evaluators on one dataset; returns (metrics on the main process, number of images)."""
    name = protocol.dataset
    with naming_bad_annotation_files(name):
        records = DatasetCatalog.get(name)
    if len(records) == 0:
        raise ValueError(f"dataset {name!r} has no images to evaluate")
    metadata = resolve_metadata(name)
    vocabulary = Vocabulary.from_metadata(metadata)
    evaluator = build_evaluator(protocol, output_dir, distributed=True)
    detections_per_image = cfg.MODEL.DECODER.TEST.DETECTIONS_PER_IMAGE
    if set(protocol.tasks) & {"instance", "detection"} and detections_per_image < protocol.max_detections:
        logger.warning(f"{name}: the model returns at most {detections_per_image} detections per image "
                       f"(MODEL.DECODER.TEST.DETECTIONS_PER_IMAGE); the metric considers up to "
                       f"{protocol.max_detections}")
    mapper = TestMapper(min_size=protocol.min_size, max_size=protocol.max_size, image_format=cfg.INPUT.FORMAT,
                        interpolation=protocol.interpolation)
    loader = build_detection_test_loader(records, mapper=mapper, batch_size=cfg.TEST.IMS_PER_GPU,
                                         num_workers=cfg.DATALOADER.NUM_WORKERS)
    logger.info(f"{name}: {len(records)} images, {len(vocabulary)} classes, tasks {list(protocol.tasks)}, "
                f"test size {protocol.min_size}/{protocol.max_size} ({protocol.interpolation})")
    bound = model.bind(vocabulary, protocol.tasks)
    if isinstance(bound, nn.Module) and isinstance(model, nn.Module):
        bound.train(model.training)  # inference_on_dataset restores this mode afterwards
    amp_dtype = autocast_dtype(cfg, "TEST")
    with torch.autocast(torch.device(cfg.MODEL.DEVICE).type, dtype=amp_dtype, enabled=amp_dtype is not None):
        metrics = inference_on_dataset(bound, ProgressLoader(loader, name, comm.is_main_process()), evaluator)
    return dict(metrics or {}), len(records)


class ProgressLoader:
    """A data loader with a tqdm progress bar (elapsed time, rate, ETA); keeps `len` for `inference_on_dataset`."""

    def __init__(self, loader, description: str, enabled: bool):
        self.loader, self.description, self.enabled = loader, description, enabled

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        with tqdm(total=len(self.loader), desc=self.description, unit="batch", disable=not self.enabled,
                  position=1, leave=False) as bar:
            for batch in self.loader:
                yield batch
                bar.update(1)


def result_fingerprint(cfg, protocol: DatasetProtocol, weights: dict) -> dict:
    """Everything that can change a dataset's metrics (see `openseed.evaluation.fingerprint`), one entry per part."""
    with naming_bad_annotation_files(protocol.dataset):
        metadata = resolve_metadata(protocol.dataset)
    return {
        "protocol": protocol.as_dict(),
        "config": flat_config(cfg),
        "weights": weights,
        "annotations": annotation_fingerprint(metadata),
        "vocabulary": vocabulary_fingerprint(Vocabulary.from_metadata(metadata)),
        "package": package_version(),
    }


@contextlib.contextmanager
def naming_bad_annotation_files(dataset: str):
    """Re-raise a JSON decoding error (a truncated or corrupt annotation file) as a ValueError naming the dataset's
    JSON files that do not parse (the decoder's own message names no file)."""
    try:
        yield
    except json.JSONDecodeError as error:
        paths = [value for value in MetadataCatalog.get(dataset).as_dict().values()
                 if isinstance(value, str) and value.endswith(".json") and os.path.isfile(value)]
        bad = [path for path in paths if not _parses_as_json(path)]
        raise ValueError(f"dataset {dataset!r}: annotation file(s) {bad or paths} are corrupt or truncated "
                         f"(not valid JSON: {error})") from error


def _parses_as_json(path: str) -> bool:
    try:
        with open(path, encoding="utf-8") as handle:
            json.load(handle)
    except ValueError:
        return False
    return True


def json_ready(value):
    """Plain JSON types: NaN/inf → None, numpy scalars → Python numbers, mappings → dicts."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _write_results(output_dir: str, dataset: str, fingerprint: dict, metrics: dict, num_images: int):
    record = {
        "dataset": dataset,
        "results": metrics,
        **fingerprint,
        "num_images": num_images,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    path = results_path(output_dir, dataset)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    content = json.dumps(record, indent=2, allow_nan=False).encode("utf-8")
    atomic_write(path, lambda handle: handle.write(content))
    logger.info(f"{dataset}: results written to {path}")


def _stored_results(output_dir: str, dataset: str, fingerprint: dict) -> dict | None:
    """The stored record when every part of its fingerprint equals `fingerprint`, else None (the log says why)."""
    path = results_path(output_dir, dataset)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            record = with_current_citations(json.load(f))
    except (OSError, ValueError) as error:
        logger.warning(f"{dataset}: stored results in {path} are unreadable ({error}); evaluating again")
        return None
    differing = differences(record, json.loads(json.dumps(fingerprint)))
    if differing or "results" not in record:
        logger.info(f"{dataset}: stored results in {path} were made with another {'; '.join(differing) or 'format'}"
                    "; evaluating again")
        return None
    return record


def _main_process_decision(decide):
    """`decide()` on the main process, shared with every process (all processes must skip the same datasets)."""
    local = decide() if comm.is_main_process() else None
    return comm.all_gather(local)[0] if comm.get_world_size() > 1 else local
