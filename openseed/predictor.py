"""`Predictor`: open-vocabulary inference on single images with a trained OpenSeeD (config + weights).

    predictor = Predictor("configs/demo/openseed_demo.yaml", "output/demo/model_final.pth")
    outputs = predictor("street.jpg", thing_classes=["car", "person"], stuff_classes=["road", "sky"], task="panoptic")
    panoptic, segments_info = outputs["panoptic_seg"]
    outputs = predictor(bgr_array, vocabulary=["cat", "dog"], task="instance", image_format="BGR")
    masks = predictor.segment_boxes(pil_image, [[10, 20, 110, 140]], concepts=["cat"]).pred_masks

Images are file paths, PIL images or uint8/uint16 numpy arrays (H×W×3 or H×W×4 in `image_format` channel order,
"RGB" by default, "BGR" for OpenCV arrays; H×W grayscale is accepted). They are resized like the evaluation
(`TestMapper.resize_image`: short side INPUT.MIN_SIZE_TEST, long side ≤ INPUT.MAX_SIZE_TEST) and every output is
returned at the original size, in Detectron2's formats (see docs/architecture.md, "Model"); post-processing runs at
the network's resolution and only the final outputs are resized, so memory does not grow with the photo. The device is `MODEL.DEVICE` of the config.
Class names are encoded with the evaluation prompt path; embeddings are cached per vocabulary.

    predictor = Predictor("configs/demo/openseed_demo.yaml", backend="onnxruntime", onnx_file="demo.onnx")

runs the network exported by `tools/export_onnx.py` (its vocabulary fixed at export) in ONNX Runtime on CPU, with
the same resize and post-processing; box prompts need the PyTorch backend.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.modeling import build_model
from detectron2.structures import Instances
from PIL import Image

from openseed.checkpoint import load_model_weights
from openseed.config import setup_cfg
from openseed.data.mappers.robust import pil_to_array, read_image_checked
from openseed.data.mappers.test_mapper import TestMapper
from openseed.modeling.postprocessing import RESOLUTIONS, PostprocessSettings
from openseed.vocabulary import Vocabulary

IMAGE_FORMATS = ("RGB", "BGR")
BACKENDS = ("pytorch", "onnxruntime")


def load_rgb_image(image, image_format: str = "RGB") -> np.ndarray:
    """A path, PIL image or numpy array -> uint8 H×W×3 RGB array.

    Arrays: uint8 or uint16 (scaled to 8 bits, ÷257 rounded), H×W (grayscale), H×W×1, H×W×3 or H×W×4 in
    `image_format` order (the fourth channel, alpha, is dropped as for an RGBA file). Files and PIL images: EXIF
    orientation applied; 16-bit grayscale, CMYK, palette and RGBA converted (`openseed.data.mappers.robust`).

    Raises:
        openseed.data.BadSampleError (a ValueError): a file is missing, not an image, or corrupt (names the file).
        ValueError / TypeError: an array of the wrong shape or dtype, an unknown `image_format`, another type.
    """
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got {image_format!r}")
    if isinstance(image, (str, os.PathLike)):
        return read_image_checked(os.fspath(image), "RGB")
    if isinstance(image, Image.Image):
        return pil_to_array(image, "RGB")
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a file path, a PIL image or a numpy array, got {type(image).__name__}")
    if image.dtype == np.uint16:
        image = np.rint(image / 257.0).astype(np.uint8)
    if image.dtype != np.uint8:
        raise ValueError(f"a numpy image must be uint8 (0..255) or uint16 (0..65535), got dtype {image.dtype}")
    if image.ndim == 3 and image.shape[2] in (1, 4):
        image = image[:, :, 0] if image.shape[2] == 1 else image[:, :, :3]
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"a numpy image must be H×W, H×W×1, H×W×3 or H×W×4, got shape {image.shape}")
    if min(image.shape[:2]) == 0:
        raise ValueError(f"a numpy image must have at least one pixel, got shape {image.shape}")
    return np.ascontiguousarray(image[:, :, ::-1] if image_format == "BGR" else image)


def make_vocabulary(vocabulary=None, thing_classes: Sequence[str] | None = None,
                    stuff_classes: Sequence[str] | None = None) -> Vocabulary:
    """A `Vocabulary` from either `vocabulary` (a `Vocabulary`, or names that are all things) or thing/stuff lists."""
    if vocabulary is not None:
        if thing_classes is not None or stuff_classes is not None:
            raise ValueError("give either vocabulary=... or thing_classes/stuff_classes, not both")
        if isinstance(vocabulary, Vocabulary):
            return vocabulary
        if isinstance(vocabulary, str):
            raise TypeError("vocabulary must be a list of class names, not one string (split it first)")
        return Vocabulary.from_names(list(vocabulary))
    if not thing_classes and not stuff_classes:
        raise ValueError("no classes given: pass vocabulary=[...] or thing_classes=[...] / stuff_classes=[...]")
    return Vocabulary.from_names(list(thing_classes or ()), list(stuff_classes or ()))


class Predictor:
    """A model in eval mode on `MODEL.DEVICE`, with the test-time resize of its config.

    Args:
        config: a config file path or a built openseed `CfgNode`.
        weights: checkpoint to load (strictly, `weights_only=True`); None uses `MODEL.WEIGHTS` ("" = random init).
            `MODEL.ADAPTER_WEIGHTS` (an adapter fine-tuning's file) is then merged in.
        opts: `KEY VALUE` overrides (with a config file path).
        postprocess_resolution: "network" (default) merges photos larger than the network input at the input size
            and resizes only the final outputs, so a 48-MP photo costs about what a 640×480 one does; "output"
            resizes every query's mask to the photo first, as evaluation does
            (`MODEL.DECODER.TEST.POSTPROCESS_RESOLUTION`).
        backend: "pytorch", or "onnxruntime" to run `onnx_file` (an `openseed.export` file of this config's model;
            its weights and vocabulary are those baked in at export, so `weights` must be None).
    """

    def __init__(self, config: str | os.PathLike | CfgNode, weights: str | os.PathLike | None = None,
                 opts: Sequence[str] | None = None, postprocess_resolution: str = "network", *,
                 backend: str = "pytorch", onnx_file: str | os.PathLike | None = None):
        if postprocess_resolution not in RESOLUTIONS:
            raise ValueError(f"postprocess_resolution must be one of {RESOLUTIONS}, got {postprocess_resolution!r}")
        if isinstance(config, CfgNode):
            if opts:
                raise ValueError("opts apply to a config file; merge them into the CfgNode yourself")
            self.cfg = config
        else:
            self.cfg = setup_cfg(os.fspath(config), list(opts or ()))
        self.backend = backend
        if backend == "onnxruntime":
            self.model = self._onnx_model(onnx_file, weights, postprocess_resolution)
        elif backend == "pytorch":
            self.model = build_model(self.cfg)
            self.model.eval()
            load_model_weights(self.model, self.cfg, None if weights is None else os.fspath(weights))
            self.model.postprocess_settings = dataclasses.replace(self.model.postprocess_settings,
                                                                  resolution=postprocess_resolution)
        else:
            raise ValueError(f"backend {backend!r}: expected one of {BACKENDS}")
        self.test_mapper = TestMapper(min_size=self.cfg.INPUT.MIN_SIZE_TEST, max_size=self.cfg.INPUT.MAX_SIZE_TEST,
                                      image_format="RGB")

    def _onnx_model(self, onnx_file, weights, postprocess_resolution: str):
        from openseed.export import OnnxRuntimeModel

        if onnx_file is None:
            raise ValueError("backend='onnxruntime' needs onnx_file=... (written by tools/export_onnx.py)")
        if weights is not None:
            raise ValueError("backend='onnxruntime' takes its weights from onnx_file; pass weights=None")
        settings = dataclasses.replace(PostprocessSettings.from_config(self.cfg), resolution=postprocess_resolution)
        return OnnxRuntimeModel(onnx_file, settings)

    @property
    def device(self) -> torch.device:
        return torch.device("cpu") if self.backend == "onnxruntime" else self.model.device

    def model_input(self, image, image_format: str = "RGB") -> dict:
        """The model's input dict: resized uint8 3×h×w image in `INPUT.FORMAT` order and the original size."""
        rgb = load_rgb_image(image, image_format)
        height, width = rgb.shape[:2]
        resized = self.test_mapper.resize_image(rgb)
        if self.cfg.INPUT.FORMAT == "BGR":
            resized = resized[:, :, ::-1]
        tensor = torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1)))
        return {"image": tensor, "height": height, "width": width}

    @torch.no_grad()
    def __call__(self, image, vocabulary=None, *, thing_classes: Sequence[str] | None = None,
                 stuff_classes: Sequence[str] | None = None, task="panoptic", image_format: str = "RGB") -> dict:
        """Predict one image; returns the model's dict for it at the original size.

        Args:
            vocabulary: class names (all things) or a `Vocabulary`; alternatively `thing_classes`/`stuff_classes`.
            task: "panoptic" | "instance" | "semantic" | "detection" or a tuple of them; the result holds
                `panoptic_seg` (int32 H×W ids, segments_info with `category_id` = index in the vocabulary),
                `instances` (pred_masks bool N×H×W except for detection, pred_boxes xyxy, scores, pred_classes)
                and/or `sem_seg` (K×H×W).
            image_format: channel order of a numpy `image` ("RGB" or "BGR").
        """
        vocab = make_vocabulary(vocabulary, thing_classes, stuff_classes)
        return self.model([self.model_input(image, image_format)], vocabulary=vocab, task=task)[0]

    @torch.no_grad()
    def segment_boxes(self, image, boxes, concepts: Sequence[str] | None = None, vocabulary=None,
                      image_format: str = "RGB") -> Instances:
        """Box-prompted segmentation: one mask per box (N×4 xyxy in original-image pixels).

        `concepts` (optional, one name per box) conditions each prompt on its concept's text; `vocabulary`
        (optional) labels the masks. Returns `Instances` of the original size with `pred_masks` (bool N×H×W),
        `pred_boxes`, `scores`, `pred_classes`, in the order of `boxes`.
        """
        if self.backend != "pytorch":
            raise ValueError(f"segment_boxes needs the PyTorch backend (this predictor runs {self.backend!r})")
        boxes = torch.as_tensor(np.asarray(boxes, dtype=np.float32)).reshape(-1, 4)
        if concepts is not None:
            concepts = [list(concepts)]
        vocab = None if vocabulary is None else make_vocabulary(vocabulary)
        inputs = [self.model_input(image, image_format)]
        return self.model.segment_boxes(inputs, [boxes], concepts=concepts, vocabulary=vocab)[0]
