"""Test-time mapper (docs/official_behaviours.md §10.4): ResizeShortestEdge(MIN_SIZE_TEST, MAX_SIZE_TEST), no padding (the model pads).

Output: the dataset dict without "annotations", plus "image" (uint8 3×h×w, resized) and the original "height" /
"width" (the size predictions are returned at). A missing, corrupt or wrongly sized image raises `BadSampleError`
naming the file: evaluation never skips samples.
"""

from __future__ import annotations

import copy
import sys

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import transforms as T
from PIL import Image

from .robust import check_image_size, read_image_checked

INTERPOLATIONS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


class TestMapper:
    """Resize so the short side is `min_size` and the long side at most `max_size` (≤ 0: no limit)."""

    __test__ = False  # not a pytest test class

    @configurable
    def __init__(self, *, min_size: int, max_size: int, image_format: str, interpolation: str = "bilinear"):
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation {interpolation!r} is not one of {sorted(INTERPOLATIONS)}")
        limit = max_size if max_size > 0 else sys.maxsize
        self.resize = T.ResizeShortestEdge(min_size, limit, interp=INTERPOLATIONS[interpolation])
        self.image_format = image_format

    def resize_image(self, image: np.ndarray) -> np.ndarray:
        """H×W×C uint8 -> the test size; each side at least 1 pixel (Detectron2 rounds a 1×5000 image's to 0)."""
        height, width = image.shape[:2]
        new_height, new_width = T.ResizeShortestEdge.get_output_shape(height, width, self.resize.short_edge_length[0],
                                                                      self.resize.max_size)
        transform = T.ResizeTransform(height, width, max(new_height, 1), max(new_width, 1), self.resize.interp)
        return transform.apply_image(image)

    @classmethod
    def from_config(cls, cfg, is_train: bool = False, dataset_name: str | None = None) -> dict:
        return {
            "min_size": cfg.INPUT.MIN_SIZE_TEST,
            "max_size": cfg.INPUT.MAX_SIZE_TEST,
            "image_format": cfg.INPUT.FORMAT,
        }

    def __call__(self, dataset_dict: dict) -> dict:
        result = copy.copy(dataset_dict)
        result.pop("annotations", None)
        image = read_image_checked(dataset_dict["file_name"], self.image_format)
        check_image_size(dataset_dict, image)
        result.setdefault("height", image.shape[0])
        result.setdefault("width", image.shape[1])
        resized = self.resize_image(image)
        result["image"] = torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1)))
        return result
