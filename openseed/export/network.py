"""The exportable inference network: a normalised, padded image in, the decoder's raw outputs out.

`InferenceNetwork(model, text_embeddings)` runs `model.backbone` and `model.sem_seg_head` (task "seg": every query
with masks) against fixed K×D text embeddings, held as a buffer so that an export bakes them in:

    image        1×3×H×W float32, normalised and zero-padded to a multiple of the size divisibility (`preprocess_images`)
    -> pred_logits   1×Q×K class logits (foreground queries first, then background ones)
       pred_masks    1×Q×H/4×W/4 mask logits
       pred_boxes    1×Q×4 boxes (cx, cy, w, h) normalised to the padded image

`NetworkMetadata` is what a runtime needs besides the graph (vocabulary, normalisation, padding, query layout); the
ONNX file stores it as JSON in its metadata (`openseed.export.onnx_export`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import torch
from detectron2.structures import ImageList
from torch import Tensor, nn

from openseed.vocabulary import Vocabulary


class InferenceNetwork(nn.Module):
    """Backbone + head of an `OpenSeeD` model for one vocabulary (eval mode, no post-processing)."""

    def __init__(self, model: nn.Module, text_embeddings: Tensor):
        super().__init__()
        self.backbone = model.backbone
        self.sem_seg_head = model.sem_seg_head
        self.register_buffer("text_embeddings", text_embeddings.detach().float().clone(), persistent=False)

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        outputs = self.sem_seg_head(self.backbone(image), self.text_embeddings, task="seg")
        return outputs["pred_logits"], outputs["pred_masks"], outputs["pred_boxes"]


@dataclass(frozen=True)
class NetworkMetadata:
    """What turns an image into the network's input and its outputs into results, stored beside the graph."""

    names: tuple[str, ...]
    is_thing: tuple[bool, ...]
    pixel_mean: tuple[float, float, float]
    pixel_std: tuple[float, float, float]
    input_format: str
    size_divisibility: int
    num_background_queries: int
    deform_attn_impl: str

    @property
    def vocabulary(self) -> Vocabulary:
        return Vocabulary(tuple(self.names), tuple(self.is_thing))

    @classmethod
    def of_model(cls, model: nn.Module, vocabulary: Vocabulary) -> NetworkMetadata:
        predictor = model.sem_seg_head.predictor
        attention = model.sem_seg_head.pixel_decoder.transformer.encoder.layers[0].self_attn
        return cls(names=tuple(vocabulary.names), is_thing=tuple(bool(t) for t in vocabulary.is_thing),
                   pixel_mean=tuple(model.pixel_mean.flatten().tolist()),
                   pixel_std=tuple(model.pixel_std.flatten().tolist()), input_format=model.input_format,
                   size_divisibility=int(model.size_divisibility),
                   num_background_queries=int(predictor.num_background_queries), deform_attn_impl=attention.impl)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str, source: str) -> NetworkMetadata:
        """Parse the stored JSON; `source` (the file) is named in the error when it is missing or malformed."""
        try:
            fields = json.loads(text)
            fields = {key: tuple(value) if isinstance(value, list) else value for key, value in fields.items()}
            return cls(**fields)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{source}: the openseed metadata of this ONNX file is malformed ({error})") from error


def preprocess_images(batched_inputs: list[dict], metadata: NetworkMetadata) -> ImageList:
    """uint8 3×H×W images (`metadata.input_format`) -> normalised float32 images zero-padded to the size
    divisibility, as `OpenSeeD.preprocess` does."""
    mean = torch.tensor(metadata.pixel_mean).view(-1, 1, 1)
    std = torch.tensor(metadata.pixel_std).view(-1, 1, 1)
    images = []
    for index, item in enumerate(batched_inputs):
        image = item.get("image") if isinstance(item, dict) else None
        if not torch.is_tensor(image) or image.dim() != 3 or image.shape[0] != 3:
            shape = tuple(image.shape) if torch.is_tensor(image) else type(image).__name__
            raise ValueError(f"input {index}: 'image' must be a 3×H×W tensor in {metadata.input_format} order, "
                             f"got {shape}")
        image = image.cpu()
        if metadata.input_format == "BGR":
            image = image.flip(0)
        images.append((image - mean) / std)
    return ImageList.from_tensors(images, metadata.size_divisibility)
