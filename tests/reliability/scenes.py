"""Synthetic raw model outputs with real structure (blob-shaped masks, a few confident queries) for the
post-processing reliability tests."""

from __future__ import annotations

import torch


def blob_outputs(num_queries: int, num_classes: int, mask_size: tuple[int, int], seed: int = 0):
    """(Q×K class logits, Q×h×w mask logits, Q×4 boxes): each query's mask logit is a smooth elliptic blob (positive
    inside, negative outside); a third of the queries have one clearly winning class."""
    generator = torch.Generator().manual_seed(seed)
    height, width = mask_size
    centres = torch.rand(num_queries, 2, generator=generator) * torch.tensor([height, width])
    radii = 2 + torch.rand(num_queries, 2, generator=generator) * torch.tensor([height, width]) / 4
    rows = torch.arange(height, dtype=torch.float32).view(1, -1, 1)
    cols = torch.arange(width, dtype=torch.float32).view(1, 1, -1)
    distance = ((rows - centres[:, 0, None, None]) / radii[:, 0, None, None]) ** 2 + (
        (cols - centres[:, 1, None, None]) / radii[:, 1, None, None]) ** 2
    mask_logits = 4.0 * (1.0 - distance)
    class_logits = torch.randn(num_queries, num_classes, generator=generator) - 3.0
    confident = torch.arange(0, num_queries, 3)
    class_logits[confident, torch.randint(0, num_classes, (len(confident),), generator=generator)] = 4.0
    boxes = torch.cat([centres.flip(-1) / torch.tensor([width, height]),
                       2 * radii.flip(-1) / torch.tensor([width, height])], dim=-1).clamp(0.01, 1.0)
    return class_logits, mask_logits, boxes
