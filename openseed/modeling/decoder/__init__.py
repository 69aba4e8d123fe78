"""Transformer decoder of OpenSeeD (`sem_seg_head.predictor`): query selection, conditioned queries, decoding."""

from openseed.modeling.decoder.conditioned_queries import BoxPrompts, ConditionedQueries
from openseed.modeling.decoder.openseed_decoder import OpenSeeDDecoder

__all__ = ["BoxPrompts", "ConditionedQueries", "OpenSeeDDecoder"]
