"""ONNX export of the inference network and its ONNX Runtime counterpart (README, "ONNX Runtime").

`export_onnx(model, vocabulary, path)` writes the network (backbone, pixel decoder, decoder, prediction heads) for one
fixed vocabulary, its text embeddings baked in, with a symbolic image size; `OnnxRuntimeModel(path, settings)` runs
it and post-processes its outputs with the model's own post-processing (`openseed.modeling.postprocessing`).
"""

from .network import InferenceNetwork, NetworkMetadata, preprocess_images
from .onnx_export import compare_with_pytorch, export_onnx, export_program
from .onnx_runtime import OnnxRuntimeModel

__all__ = [
    "InferenceNetwork",
    "NetworkMetadata",
    "OnnxRuntimeModel",
    "compare_with_pytorch",
    "export_onnx",
    "export_program",
    "preprocess_images",
]
