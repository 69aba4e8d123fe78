"""Backbones registered in Detectron2's `BACKBONE_REGISTRY` (importing this package registers them).

Detectron2's own `build_resnet_backbone` is registered by Detectron2 and configured by `MODEL.RESNETS.*`.
"""

from openseed.modeling.backbone.small import SmallConvBackbone
from openseed.modeling.backbone.swin import D2SwinTransformer

__all__ = ["D2SwinTransformer", "SmallConvBackbone"]
