"""`Predictor`: open-vocabulary inference on single images with a trained OpenSeeD (config + weights).

    predictor = Predictor("configs/demo/openseed_demo.yaml", "output/demo/model_final.pth")
    outputs = predictor("street.jpg", thing_classes=["car", "person"], stuff_classes=["road", "sky"], task="panoptic")
    panoptic, segments_info = outputs["panoptic_seg"]
    outputs = predictor(bgr_array, vocabulary=["cat", "dog"], task="instance", image_format="BGR")
    masks = predictor.segment_boxes(pil_image, [[10, 20, 110, 140]], concepts=["cat"]).pred_masks

Images are file paths, PIL images or uint8 numpy arrays (H×W×3 in `image_format` channel order, "RGB" by default,
"BGR" for OpenCV arrays; H×W grayscale is accepted). They are resized like the evaluation (Detectron2's
`ResizeShortestEdge(INPUT.MIN_SIZE_TEST, INPUT.MAX_SIZE_TEST)`) and every output is returned at the original size,
in Detectron2's formats (see docs/architecture.md, "Model"). The device is `MODEL.DEVICE` of the config.
Class names are encoded with the evaluation prompt path; embeddings are cached per vocabulary.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from detectron2.structures import Instances
from PIL import Image

from openseed.config import setup_cfg
from openseed.data.mappers.robust import read_image_checked
from openseed.engine.adapter_file import load_model_weights
from openseed.vocabulary import Vocabulary

IMAGE_FORMATS = ("RGB", "BGR")


def load_rgb_image(image, image_format: str = "RGB") -> np.ndarray:
    """A path, PIL image or uint8 numpy array (H×W×3 in `image_format` order, or H×W) -> uint8 H×W×3 RGB array.

    Raises:
        openseed.data.BadSampleError (a ValueError): a file is missing, not an image, or corrupt (names the file).
        ValueError / TypeError: an array of the wrong shape or dtype, an unknown `image_format`, another type.
    """
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got {image_format!r}")
    if isinstance(image, (str, os.PathLike)):
        return read_image_checked(os.fspath(image), "RGB")
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a file path, a PIL image or a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"a numpy image must be uint8 (0..255), got dtype {image.dtype}")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"a numpy image must be H×W×3 or H×W, got shape {image.shape}")
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
    """

    def __init__(self, config: str | os.PathLike | CfgNode, weights: str | os.PathLike | None = None,
                 opts: Sequence[str] | None = None):
        if isinstance(config, CfgNode):
            if opts:
                raise ValueError("opts apply to a config file; merge them into the CfgNode yourself")
            self.cfg = config
        else:
            self.cfg = setup_cfg(os.fspath(config), list(opts or ()))
        self.model = build_model(self.cfg)
        self.model.eval()
        load_model_weights(self.model, self.cfg, None if weights is None else os.fspath(weights))
        self.resize = T.ResizeShortestEdge(self.cfg.INPUT.MIN_SIZE_TEST, self.cfg.INPUT.MAX_SIZE_TEST)

    @property
    def device(self) -> torch.device:
        return self.model.device

    def model_input(self, image, image_format: str = "RGB") -> dict:
        """The model's input dict: resized uint8 3×h×w image in `INPUT.FORMAT` order and the original size."""
        rgb = load_rgb_image(image, image_format)
        height, width = rgb.shape[:2]
        resized = self.resize.get_transform(rgb).apply_image(rgb)
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
        boxes = torch.as_tensor(np.asarray(boxes, dtype=np.float32)).reshape(-1, 4)
        if concepts is not None:
            concepts = [list(concepts)]
        vocab = None if vocabulary is None else make_vocabulary(vocabulary)
        inputs = [self.model_input(image, image_format)]
        return self.model.segment_boxes(inputs, [boxes], concepts=concepts, vocabulary=vocab)[0]
