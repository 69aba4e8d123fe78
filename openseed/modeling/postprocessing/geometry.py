"""Image geometry at inference and the two coordinate conversions it implies (docs/official_behaviours.md §9, common steps 2-3).

An evaluated image goes through three sizes: the *input* size after the test-time resize (what the network sees,
before padding), the *padded* size (the batch tensor, a multiple of the size divisibility) and the *output* size
(`height`, `width` of the dataset dict, usually the original image). Mask logits come at stride 4 of the padded size;
boxes come normalised to the padded size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from openseed.structures import box_cxcywh_to_xyxy

BAND_FACTORS = (2, 4)  # mask-to-padded upsampling factors for which row bands are bit-identical (tested)


@dataclass(frozen=True)
class ImageGeometry:
    """Sizes of one image, each `(height, width)` in pixels.

    Attributes:
        input_size: image size after the test resize, before padding (`ImageList.image_sizes[i]`).
        padded_size: size of the padded batch tensor (`ImageList.tensor.shape[-2:]`).
        output_size: requested output resolution (the dataset dict's `height`, `width`).
    """

    input_size: tuple[int, int]
    padded_size: tuple[int, int]
    output_size: tuple[int, int]

    def __post_init__(self):
        for name in ("input_size", "padded_size", "output_size"):
            size = tuple(int(s) for s in getattr(self, name))
            if len(size) != 2 or min(size) <= 0:
                raise ValueError(f"{name} must be two positive integers (height, width), got {getattr(self, name)!r}")
            object.__setattr__(self, name, size)
        if self.input_size[0] > self.padded_size[0] or self.input_size[1] > self.padded_size[1]:
            raise ValueError(f"input_size {self.input_size} is larger than padded_size {self.padded_size}")


def resize_mask_logits(mask_logits: Tensor, geometry: ImageGeometry) -> Tensor:
    """Mask logits at network resolution -> logits at the output resolution.

    Bilinear upsampling (align_corners=False) to the padded size, crop to the input size, then bicubic resize with
    antialiasing to the output size: the official order and kernels. Every query is processed independently, so
    resizing a subset of queries gives bit-identical rows.

    Args:
        mask_logits: C×h×w (any float dtype; computed in float32).
    Returns:
        C×H×W float32 logits, (H, W) = `geometry.output_size`.
    """
    padded = F.interpolate(mask_logits.float()[None], size=geometry.padded_size, mode="bilinear", align_corners=False)
    cropped = padded[:, :, : geometry.input_size[0], : geometry.input_size[1]]
    if geometry.input_size == geometry.output_size:
        return cropped[0]  # the bicubic resize to the same size has weights exactly (0, 1, 0, 0): a no-op
    resized = F.interpolate(cropped, size=geometry.output_size, mode="bicubic", align_corners=False, antialias=True)
    return resized[0]


def row_band_factor(mask_height: int, geometry: ImageGeometry) -> int | None:
    """Upsampling factor f = padded height / mask height when `resize_mask_logits_rows` applies, else None.

    Row bands are used when f is 2 or 4 (the model's masks are at stride 4: every source coordinate (y + 0.5)/f - 0.5
    is a dyadic fraction, and the CPU kernel's results were verified bit-identical band by band; f = 8 was not) and
    the final resize is the identity (input size = output size).
    """
    factor, remainder = divmod(geometry.padded_size[0], mask_height)
    if remainder or factor not in BAND_FACTORS or geometry.input_size != geometry.output_size:
        return None
    return factor


def resize_mask_logits_rows(mask_logits: Tensor, geometry: ImageGeometry, factor: int, rows: slice,
                            queries: Tensor | None = None) -> Tensor:
    """Output rows `rows` of `resize_mask_logits`, upsampled from the few mask rows they depend on.

    Output row y interpolates mask rows ⌊(y + 0.5)/f − 0.5⌋ and the next one (clamped to the map); only those are
    upsampled, and the slice's own rows are bit-identical to the whole map's. Bands starting at f/2 (mod f) waste
    the fewest rows.

    Args:
        mask_logits: Q×h×w logits at mask resolution; factor: `row_band_factor(h, geometry)` (not None).
        rows: output rows, within [0, output height).
        queries: C indices of the queries to resize (default: all Q).
    Returns:
        C×len(rows)×W float32 logits, bit-identical to `resize_mask_logits(...)[:, rows]`.
    """
    height = mask_logits.shape[1]
    low = max((2 * rows.start + 1 - factor) // (2 * factor), 0)  # ⌊(y + 0.5)/f − 0.5⌋ at the first row, ≥ 0
    high = min(max((2 * rows.stop - 1 - factor) // (2 * factor), low) + 1, height - 1)  # successor at the last row
    source = mask_logits[:, low : high + 1] if queries is None else mask_logits[queries, low : high + 1]
    size = ((high + 1 - low) * factor, geometry.padded_size[1])
    band = F.interpolate(source.float()[None], size=size, mode="bilinear", align_corners=False)[0]
    offset = rows.start - low * factor
    return band[:, offset : offset + rows.stop - rows.start, : geometry.input_size[1]]


def boxes_to_output_pixels(boxes: Tensor, geometry: ImageGeometry) -> Tensor:
    """Normalised (cx, cy, w, h) boxes of the padded input -> (x0, y0, x1, y1) pixels of the output image.

    The scale is padded/input·output per axis (the official de-normalisation; no clipping).

    Args:
        boxes: N×4 in [0, 1] relative to the padded size.
    Returns:
        N×4 xyxy in output-image pixels, dtype of `boxes`.
    """
    scale_h = geometry.padded_size[0] / geometry.input_size[0] * geometry.output_size[0]
    scale_w = geometry.padded_size[1] / geometry.input_size[1] * geometry.output_size[1]
    xyxy = box_cxcywh_to_xyxy(boxes)
    scale = torch.tensor([scale_w, scale_h, scale_w, scale_h], dtype=torch.float32).to(xyxy)
    return xyxy * scale
