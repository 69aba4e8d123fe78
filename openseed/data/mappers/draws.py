"""The random draws of the LSJ augmentation, behind one seam so that recorded draws can be replayed.

Per sample the LSJ pipeline (`build_lsj_augmentation`) draws three numbers, in this order:

| augmentation | draw | use |
|---|---|---|
| `LSJRandomFlip` (when `RANDOM_FLIP != "none"`) | u ~ U(0, 1) | flipped when u < 0.5 |
| `LSJResizeScale` | s ~ U(MIN_SCALE, MAX_SCALE) | resized to fit s·IMAGE_SIZE (Detectron2 `ResizeScale`) |
| `LSJFixedSizeCrop` | f ~ U(0, 1) | crop offset = round(f · max(resized − IMAGE_SIZE, 0)), one f for both axes |

A draw source is any object with `uniform(low, high) -> float`. The default, `NUMPY_GLOBAL_DRAWS`, draws from
NumPy's global stream exactly as Detectron2's `RandomFlip` / `ResizeScale` / `FixedSizeCrop` do (the same numbers
for the same seed; data-loader workers seed that stream); a `numpy.random.Generator` is a valid source too;
`ReplayDraws` returns recorded draws (the mapper-fidelity tests feed it the draws recorded from the official
mappers, `docs/fidelity_mappers.md`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import numpy as np
from detectron2.data import transforms as T
from PIL import Image


class DrawSource(Protocol):
    def uniform(self, low: float, high: float) -> float: ...


class NumpyGlobalDraws:
    """Draws from NumPy's global random stream (`np.random.uniform`), as Detectron2's augmentations do."""

    def uniform(self, low: float, high: float) -> float:
        return np.random.uniform(low, high)


NUMPY_GLOBAL_DRAWS = NumpyGlobalDraws()


class ReplayDraws:
    """Returns recorded draws `(low, high, value)` in order; each must be requested with its recorded range.

    Attributes:
        position: number of draws returned so far (`remaining` = recorded draws not yet returned).
    """

    def __init__(self, draws: Sequence[tuple[float, float, float]]):
        self.draws = [(float(low), float(high), float(value)) for low, high, value in draws]
        self.position = 0

    @property
    def remaining(self) -> int:
        return len(self.draws) - self.position

    def uniform(self, low: float, high: float) -> float:
        if self.position >= len(self.draws):
            raise RuntimeError(f"replay exhausted: all {len(self.draws)} recorded draws used, U({low}, {high}) asked")
        recorded_low, recorded_high, value = self.draws[self.position]
        if not (math.isclose(low, recorded_low, rel_tol=1e-9) and math.isclose(high, recorded_high, rel_tol=1e-9)):
            raise ValueError(f"replay draw {self.position} was recorded as U({recorded_low}, {recorded_high}) but "
                             f"U({low}, {high}) is asked: the augmentations differ from the recording")
        self.position += 1
        return value


class LSJRandomFlip(T.RandomFlip):
    """Detectron2 `RandomFlip` drawing its coin from `draws`."""

    def __init__(self, prob: float = 0.5, *, horizontal: bool = True, vertical: bool = False,
                 draws: DrawSource = NUMPY_GLOBAL_DRAWS):
        super().__init__(prob, horizontal=horizontal, vertical=vertical)
        self.draws = draws

    def get_transform(self, image: np.ndarray) -> T.Transform:
        h, w = image.shape[:2]
        if not self.draws.uniform(0.0, 1.0) < self.prob:
            return T.NoOpTransform()
        return T.HFlipTransform(w) if self.horizontal else T.VFlipTransform(h)


class LSJResizeScale(T.ResizeScale):
    """Detectron2 `ResizeScale` drawing its scale from `draws`."""

    def __init__(self, min_scale: float, max_scale: float, target_height: int, target_width: int,
                 interp: int = Image.BILINEAR, *, draws: DrawSource = NUMPY_GLOBAL_DRAWS):
        super().__init__(min_scale, max_scale, target_height, target_width, interp)
        self.draws = draws

    def get_transform(self, image: np.ndarray) -> T.Transform:
        return self._get_resize(image, self.draws.uniform(self.min_scale, self.max_scale))


class LSJFixedSizeCrop(T.FixedSizeCrop):
    """Detectron2 `FixedSizeCrop` drawing its crop position from `draws` (one fraction for both axes, drawn even
    when the image needs no crop, so the stream of draws does not depend on the image size)."""

    def __init__(self, crop_size: tuple[int, int], pad: bool = True, pad_value: float = 128.0,
                 seg_pad_value: int = 255, *, draws: DrawSource = NUMPY_GLOBAL_DRAWS):
        super().__init__(crop_size, pad, pad_value, seg_pad_value)
        self.draws = draws

    def _get_crop(self, image: np.ndarray) -> T.Transform:
        input_h, input_w = image.shape[:2]
        crop_h, crop_w = self.crop_size
        max_offset = np.maximum(np.subtract((input_h, input_w), (crop_h, crop_w)), 0)
        offset_y, offset_x = np.round(max_offset * self.draws.uniform(0.0, 1.0)).astype(int)
        return T.CropTransform(offset_x, offset_y, crop_w, crop_h, input_w, input_h)
