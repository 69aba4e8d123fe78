"""Pixel decoder: multi-scale deformable attention, sine position embedding, `OpenSeeDPixelDecoder`."""

from openseed.modeling.pixel_decoder.encoder import OpenSeeDPixelDecoder
from openseed.modeling.pixel_decoder.ms_deform_attn import MSDeformAttn, ms_deform_attn_core_pytorch
from openseed.modeling.pixel_decoder.position_encoding import PositionEmbeddingSine

__all__ = ["MSDeformAttn", "OpenSeeDPixelDecoder", "PositionEmbeddingSine", "ms_deform_attn_core_pytorch"]
