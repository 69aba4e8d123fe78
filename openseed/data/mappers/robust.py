"""Bad-sample handling shared by every mapper.

Mappers raise `BadSampleError` (message: the file and the problem) for a sample they cannot use: a missing or
unreadable image, an image whose size differs from its annotation, a panoptic PNG of another size, an unknown
category id, a segment id absent from its PNG. `SkipBadSamples` wraps a mapper: in training it logs a warning with a
running count and returns None (the caller then draws another sample); in evaluation (`is_train=False`) the error
propagates.

A box-only annotation whose box is not finite, of zero or negative width/height, or entirely outside the image
(`box_problem`) is not worth the whole image: the Objects365 mapper drops that annotation and keeps the image, counting
and logging the drop per reason (`BadInputCounter`), as the official mapper drops such boxes after the crop
(docs/fidelity_mappers.md, difference 5).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
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


BOX_NOT_FINITE = "boxes dropped as not finite"
BOX_EMPTY = "boxes dropped as empty (zero or negative width or height)"
BOX_OUTSIDE = "boxes dropped as outside the image"


def box_problem(box: Sequence[float], image_hw: tuple[int, int]) -> str | None:
    """Why the XYXY box cannot be used on an image of size (H, W) (`BOX_NOT_FINITE`, `BOX_EMPTY`, `BOX_OUTSIDE`),
    or None for a finite box of positive width and height overlapping the image."""
    x0, y0, x1, y1 = (float(v) for v in box)
    h, w = image_hw
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        return BOX_NOT_FINITE
    if x1 <= x0 or y1 <= y0:
        return BOX_EMPTY
    if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
        return BOX_OUTSIDE
    return None


class BadInputCounter:
    """Running counts of bad input per reason (a plural noun phrase: "skipped", "boxes dropped as …"), each
    occurrence logged as a warning with its count.

    Counts are per process (each data-loader worker counts its own, as it holds its own copy of the mapper).
    """

    def __init__(self, dataset_name: str = ""):
        self.dataset_name = dataset_name
        self.counts: Counter[str] = Counter()

    def count(self, reason: str, action: str, message: str) -> int:
        """Counts one `reason` and logs `dataset '<name>': <action> (<n> <reason> so far in this process): <message>`;
        returns the running count."""
        self.counts[reason] += 1
        logger.warning("dataset %r: %s (%d %s so far in this process): %s", self.dataset_name, action,
                       self.counts[reason], reason, message)
        return self.counts[reason]


class SkipBadSamples:
    """Calls `mapper`; in training a `BadSampleError` is logged, counted and turned into None.

    Attributes:
        skipped: `BadInputCounter` of the samples skipped so far by this wrapper (one reason, `SKIPPED`).
        num_skipped: its count.
    """

    SKIPPED = "skipped"

    def __init__(self, mapper: Callable[[dict], dict], *, is_train: bool, dataset_name: str = ""):
        self.mapper = mapper
        self.is_train = is_train
        self.skipped = BadInputCounter(dataset_name)

    @property
    def num_skipped(self) -> int:
        return self.skipped.counts[self.SKIPPED]

    def __call__(self, dataset_dict: dict) -> dict | None:
        try:
            return self.mapper(dataset_dict)
        except BadSampleError as error:
            if not self.is_train:
                raise
            self.skipped.count(self.SKIPPED, "skipping bad sample", str(error))
            return None
