"""`sem_seg_head`: the pixel decoder followed by the OpenSeeD predictor (official attribute names)."""

from __future__ import annotations

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from torch import Tensor, nn

from openseed.modeling.decoder import BoxPrompts, OpenSeeDDecoder
from openseed.modeling.pixel_decoder.encoder import OpenSeeDPixelDecoder
from openseed.modeling.text import LanguageEncoder
from openseed.structures import DecoderOutputs
from openseed.utils.random_draws import TrainingDraws


class OpenSeeDHead(nn.Module):
    """`pixel_decoder` (backbone features -> mask features + multi-scale maps) and `predictor` (the decoder)."""

    @configurable
    def __init__(self, *, pixel_decoder: nn.Module, predictor: OpenSeeDDecoder):
        super().__init__()
        self.pixel_decoder = pixel_decoder
        self.predictor = predictor

    @classmethod
    def from_config(cls, cfg, input_shape: dict[str, ShapeSpec]):
        in_shapes = {k: v for k, v in input_shape.items() if k in cfg.MODEL.ENCODER.IN_FEATURES}
        return {
            "pixel_decoder": OpenSeeDPixelDecoder(cfg, in_shapes),
            "predictor": OpenSeeDDecoder(cfg, in_channels=cfg.MODEL.ENCODER.CONVS_DIM,
                                         lang_encoder=LanguageEncoder(cfg)),
        }

    def forward(self, features: dict[str, Tensor], text_embeddings: Tensor, targets: list[dict] | None = None,
                task: str = "seg", box_prompts: BoxPrompts | None = None, draws: TrainingDraws | None = None) -> DecoderOutputs:
        """features: backbone maps by name; text_embeddings K×D. Returns the predictor's output dict."""
        mask_features, multi_scale_features = self.pixel_decoder.forward_features(features)
        return self.predictor(multi_scale_features, mask_features, text_embeddings, targets=targets, task=task,
                              box_prompts=box_prompts, draws=draws)
