"""Backbones registered in Detectron2's `BACKBONE_REGISTRY` (importing this package registers them)."""

from openseed.modeling.backbone.swin import D2SwinTransformer

__all__ = ["D2SwinTransformer"]
