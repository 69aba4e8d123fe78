"""`pixel_counts`: how many pixels of each mask are on, the mask areas every merge step needs."""

from __future__ import annotations

import torch
from torch import Tensor


def pixel_counts(masks: Tensor) -> Tensor:
    """C×… bool masks -> C int32 counts of True pixels.

    Summed through a uint8 view of the bool tensor with an int32 accumulator: the reduction casts as it reads, where
    `masks.sum(dtype=torch.int32)` first copies the masks to an int32 tensor (about 2× slower on a band of masks).
    """
    return masks.view(torch.uint8).flatten(1).sum(1, dtype=torch.int32)
