"""Bad-sample handling shared by every mapper.

Mappers raise `BadSampleError` (message: the file and the problem) for a sample they cannot use: a missing or
unreadable image, an image whose size differs from its annotation, a panoptic PNG of another size, a box that is
zero-area / not finite / outside the image, an unknown category id, a segment id absent from its PNG.
`SkipBadSamples` wraps a mapper: in training it logs a warning with a running count and returns None (the caller
then draws another sample); in evaluation (`is_train=False`) the error propagates.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import numpy as np
from detectron2.data import detection_utils as utils
from detectron2.utils.file_io import PathManager
from PIL import Image, ImageOps

logger = logging.getLogger(__name__)

SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # Pillow modes of 16-bit (and 32-bit) grayscale


class BadSampleError(ValueError):
    """A dataset sample that cannot be used; the message names the file and the problem."""


def pil_to_array(image: Image.Image, image_format: str) -> np.ndarray:
    """A PIL image -> numpy array in `image_format` (as `detection_utils.read_image`): EXIF orientation applied,
    16-bit grayscale scaled to 8 bits (÷257, rounded; Pillow would clip it at 255), CMYK/palette converted, alpha
    dropped."""
    image = ImageOps.exif_transpose(image)
    if image.mode in SIXTEEN_BIT_MODES:
        values = np.clip(np.asarray(image, dtype=np.float64), 0, 65535) / 257.0
        image = Image.fromarray(np.rint(values).astype(np.uint8))
    return utils.convert_PIL_to_numpy(image, image_format)


def read_image_checked(file_name: str, image_format: str) -> np.ndarray:
    """Read an image file with `pil_to_array`; a missing or corrupt/truncated file raises `BadSampleError`."""
    try:
        with PathManager.open(file_name, "rb") as handle:
            return pil_to_array(Image.open(handle), image_format)
    except FileNotFoundError as error:
        raise BadSampleError(f"{file_name}: image file not found") from error
    except (OSError, SyntaxError) as error:
        raise BadSampleError(f"{file_name}: image file is corrupt or truncated ({error})") from error


def check_image_size(dataset_dict: dict, image: np.ndarray) -> None:
    """The image must have the annotation's `height`/`width` (when the dict has them)."""
    h, w = image.shape[:2]
    expected = (dataset_dict.get("height", h), dataset_dict.get("width", w))
    if expected != (h, w):
        raise BadSampleError(
            f"{dataset_dict.get('file_name', '?')}: image is {w}×{h} (W×H) but its annotation says "
            f"{expected[1]}×{expected[0]}"
        )


def check_category(file_name: str, category_id, num_classes: int | None) -> int:
    """A contiguous category id in [0, num_classes) (upper bound unchecked when `num_classes` is None)."""
    valid = isinstance(category_id, (int, np.integer)) and category_id >= 0
    if not valid or (num_classes is not None and category_id >= num_classes):
        bound = f"[0, {num_classes})" if num_classes is not None else ">= 0"
        raise BadSampleError(f"{file_name}: unknown category id {category_id!r} (expected a contiguous id {bound})")
    return int(category_id)


def check_box_xyxy(file_name: str, box: Sequence[float], image_hw: tuple[int, int]) -> None:
    """A finite box of positive width and height overlapping the image (H, W)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    h, w = image_hw
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise BadSampleError(f"{file_name}: box {list(box)} is not finite")
    if x1 <= x0 or y1 <= y0:
        raise BadSampleError(f"{file_name}: box {list(box)} (XYXY) has zero or negative area")
    if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
        raise BadSampleError(f"{file_name}: box {list(box)} (XYXY) lies outside the {w}×{h} image")


class SkipBadSamples:
    """Calls `mapper`; in training a `BadSampleError` is logged, counted and turned into None.

    Attributes:
        num_skipped: samples skipped so far by this wrapper (per process: each data-loader worker counts its own).
    """

    def __init__(self, mapper: Callable[[dict], dict], *, is_train: bool, dataset_name: str = ""):
        self.mapper = mapper
        self.is_train = is_train
        self.dataset_name = dataset_name
        self.num_skipped = 0

    def __call__(self, dataset_dict: dict) -> dict | None:
        try:
            return self.mapper(dataset_dict)
        except BadSampleError as error:
            if not self.is_train:
                raise
            self.num_skipped += 1
            logger.warning("dataset %r: skipping bad sample (%d skipped so far in this process): %s",
                           self.dataset_name, self.num_skipped, error)
            return None
