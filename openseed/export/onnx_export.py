"""Export the inference network to ONNX for one vocabulary, with a symbolic image size, and check it.

The graph comes from `torch.onnx.export(..., dynamo=True)` (the `torch.export` path): the TorchScript tracer would
freeze every level size of the multi-scale features (read as Python numbers) into the graph, whereas `torch.export`
keeps them symbolic in the padded height and width, declared as multiples of the size divisibility (`min_size` ..
`max_size` pixels). Both deformable-attention kernels export. "auto" (the default) exports the reference kernel as
ONNX GridSample, which ONNX Runtime runs fast; the embedding bag, when asked for by name, becomes a Gather + weighted
sum graph that ONNX Runtime runs 15-250× slower (demo network at 256×320 and 800×1216).

The file holds the weights (baked text embeddings included) and `NetworkMetadata` as JSON under the metadata key
"openseed"; it is written atomically (temporary file, then rename).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from openseed.vocabulary import Vocabulary

from .network import InferenceNetwork, NetworkMetadata, preprocess_images
from .onnx_runtime import METADATA_KEY, OUTPUT_NAMES, OnnxRuntimeModel

logger = logging.getLogger(__name__)

OPSET = 18


def _require_onnx():
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise ImportError(f"ONNX export needs the packages of the `onnx` extra (pip install -e '.[onnx]'): "
                          f"{error}") from error


def export_program(network: nn.Module, output_names: list[str], *, sample_size: tuple[int, int], step: int,
                   min_size: int, max_size: int):
    """`torch.onnx.ONNXProgram` of `network` (eval mode; one input "image" 1×3×H×W), H and W symbolic multiples of
    `step` from `min_size` to `max_size`, traced at `sample_size`."""
    _require_onnx()
    height = step * torch.export.Dim("height_blocks", min=max(1, min_size // step), max=max_size // step)
    width = step * torch.export.Dim("width_blocks", min=max(1, min_size // step), max=max_size // step)
    sample = torch.zeros(1, 3, *sample_size)
    with torch.no_grad():
        return torch.onnx.export(network, (sample,), dynamo=True, input_names=["image"], output_names=output_names,
                                 dynamic_shapes=({2: height, 3: width},), opset_version=OPSET, optimize=True,
                                 verbose=False)


def export_onnx(model: nn.Module, vocabulary: Vocabulary, path: str | os.PathLike, *,
                sample_size: tuple[int, int] = (512, 512), min_size: int = 128, max_size: int = 4096) -> Path:
    """Write the network of `model` (an `OpenSeeD` in eval mode on CPU, float32) for `vocabulary` to `path`.

    Args:
        sample_size: (H, W) of the example image traced (a multiple of the size divisibility).
        min_size, max_size: range of the padded height and width the graph accepts.
    Returns:
        the path written.
    """
    _require_onnx()
    if model.training:
        raise ValueError("export_onnx needs the model in eval mode (model.eval())")
    if model.device.type != "cpu":
        raise ValueError(f"export_onnx runs on CPU; the model is on {model.device}")
    metadata = NetworkMetadata.of_model(model, vocabulary)
    step = metadata.size_divisibility or 32
    if any(side % step for side in sample_size):
        raise ValueError(f"sample_size {tuple(sample_size)} must be multiples of the size divisibility {step}")
    with torch.no_grad():
        text = model.lang_encoder.embed_vocabulary(vocabulary, train=False)
    network = InferenceNetwork(model, text).eval()
    program = export_program(network, list(OUTPUT_NAMES), sample_size=sample_size, step=step, min_size=min_size,
                             max_size=max_size)
    program.model.metadata_props[METADATA_KEY] = metadata.to_json()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(handle)
    try:
        program.save(tmp_name)
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    logger.info(f"exported the network for {len(vocabulary)} classes to {path}")
    return path


def compare_with_pytorch(path: str | os.PathLike, model: nn.Module, image: torch.Tensor,
                         threads: int | None = None) -> dict[str, float]:
    """Max |ONNX Runtime − PyTorch| of each raw output for one uint8 3×H×W image (float32 on both sides)."""
    runtime = OnnxRuntimeModel(path, threads=threads)
    images = preprocess_images([{"image": image}], runtime.metadata)
    with torch.no_grad():
        text = model.lang_encoder.embed_vocabulary(runtime.metadata.vocabulary, train=False)
        expected = InferenceNetwork(model, text).eval()(images.tensor)
    got = runtime.network_outputs(images.tensor)
    return {name: float(np.abs(got[name] - reference.numpy()).max())
            for name, reference in zip(OUTPUT_NAMES, expected)}
