"""Run an exported network with ONNX Runtime (CPU) and post-process its outputs like the PyTorch model.

`OnnxRuntimeModel(path, settings)` mirrors `OpenSeeD.inference`: `model(batched_inputs, vocabulary, task)` returns
one result dict per image ("sem_seg", "panoptic_seg", "instances" as requested). The vocabulary is the one baked
into the file; asking for another is an error. Each image runs on its own (batch of one, as `TEST.IMS_PER_GPU` 1),
so its padding is that of the image alone. Task "detection" alone drops the background queries, as the decoder's
"det" task does.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from openseed.modeling.postprocessing import PostprocessSettings, normalize_tasks, postprocess
from openseed.vocabulary import Vocabulary

from .network import NetworkMetadata, preprocess_images

METADATA_KEY = "openseed"
OUTPUT_NAMES = ("pred_logits", "pred_masks", "pred_boxes")
DEFAULT_TASKS = ("semantic", "instance", "panoptic")


class OnnxRuntimeModel:
    """An exported network in an ONNX Runtime CPU session, with the model's post-processing.

    Args:
        path: the `.onnx` file written by `openseed.export.export_onnx`.
        settings: post-processing thresholds (`PostprocessSettings.from_config(cfg)`; default: paper eval config).
        threads: intra-op threads of the session (default: `torch.get_num_threads()`).
        default_tasks: tasks when a call gives none (`TEST.*_ON` of the config).
    """

    def __init__(self, path: str | os.PathLike, settings: PostprocessSettings | None = None,
                 threads: int | None = None, default_tasks=DEFAULT_TASKS):
        try:
            import onnxruntime
        except ImportError as error:
            raise ImportError("the onnxruntime backend needs the `onnx` extra (pip install -e '.[onnx]')") from error
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX model {self.path} not found (write it with tools/export_onnx.py)")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        try:
            self.session = onnxruntime.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # noqa: BLE001 - onnxruntime raises its own exception types; name the file
            raise ValueError(f"{self.path}: ONNX Runtime cannot load this file ({error})") from error
        stored = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if stored is None:
            raise ValueError(f"{self.path}: not an openseed export (no '{METADATA_KEY}' metadata)")
        self.metadata = NetworkMetadata.from_json(stored, str(self.path))
        self.settings = settings or PostprocessSettings()
        self.default_tasks = tuple(default_tasks)

    @property
    def vocabulary(self) -> Vocabulary:
        return self.metadata.vocabulary

    def network_outputs(self, image: torch.Tensor) -> dict[str, np.ndarray]:
        """Raw outputs {pred_logits, pred_masks, pred_boxes} for one preprocessed 1×3×H×W image."""
        values = self.session.run(list(OUTPUT_NAMES), {"image": image.numpy().astype(np.float32, copy=False)})
        return dict(zip(OUTPUT_NAMES, values))

    def _check_vocabulary(self, vocabulary: Vocabulary | None) -> Vocabulary:
        if vocabulary is None:
            return self.vocabulary
        if (tuple(vocabulary.names), tuple(vocabulary.is_thing)) != (self.metadata.names, self.metadata.is_thing):
            raise ValueError(f"{self.path} was exported for a fixed vocabulary of {len(self.metadata.names)} classes "
                             f"({', '.join(self.metadata.names[:5])}, ...); export it again for this vocabulary")
        return vocabulary

    def __call__(self, batched_inputs: list[dict], vocabulary: Vocabulary | None = None, task=None) -> list[dict]:
        """One result dict per input, as `OpenSeeD.inference` (images uint8 3×H×W, optional height/width)."""
        vocabulary = self._check_vocabulary(vocabulary)
        tasks = normalize_tasks(task if task is not None else self.default_tasks)
        detection_only = not tasks - {"detection"}
        results = []
        for item in batched_inputs:
            images = preprocess_images([item], self.metadata)
            outputs = {k: torch.from_numpy(v) for k, v in self.network_outputs(images.tensor).items()}
            keep = outputs["pred_logits"].shape[1] - (self.metadata.num_background_queries if detection_only else 0)
            input_size = images.image_sizes[0]
            results.append(postprocess(
                outputs["pred_logits"][0, :keep],
                None if detection_only else outputs["pred_masks"][0],
                outputs["pred_boxes"][0, :keep],
                tasks=tasks,
                input_size=input_size,
                padded_size=tuple(images.tensor.shape[-2:]),
                output_size=(item.get("height", input_size[0]), item.get("width", input_size[1])),
                is_thing=vocabulary.is_thing,
                settings=self.settings,
            ))
        return results
