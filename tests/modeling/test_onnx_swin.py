"""ONNX export of the Swin backbone with a symbolic image size: a narrow Swin (two stages of 16 and 32 channels,
two blocks each so that each stage has a shifted-window block and patch merging runs between them, random weights)
is exported at one size and run by ONNX Runtime at two others whose window counts and window padding differ from the
traced ones; every output equals PyTorch within 1e-4. (Two stages keep the export cheap; later stages repeat them.)

Window 7 at strides 4 and 8 of a 128×160 image: res2 32×40 (padded to 35×42, 5×6 windows), res3 16×20 (21×21, 3×3).
At 96×192: res2 24×48 (28×49, 4×7 windows), res3 12×24 (14×28, 2×4); at 224×96: res2 56×24 (56×28, 8×4 windows,
no row padding), res3 28×12 (28×14, 4×2).
"""

import numpy as np
import pytest
import torch
from torch import nn

from openseed.config import get_cfg
from openseed.modeling.backbone.swin import D2SwinTransformer

onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

TOLERANCE = 1e-4
STAGES = ("res2", "res3")


class BackboneOutputs(nn.Module):
    """The backbone's feature dict as a tuple (`STAGES`), as an exported graph returns it."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        features = self.backbone(image)
        return tuple(features[name] for name in STAGES)


@pytest.fixture(scope="module")
def narrow_swin_session(tmp_path_factory):
    from openseed.export import export_program

    cfg = get_cfg()
    cfg.MODEL.SWIN.EMBED_DIM = 16
    cfg.MODEL.SWIN.DEPTHS = [2, 2]
    cfg.MODEL.SWIN.NUM_HEADS = [1, 2]
    cfg.MODEL.SWIN.OUT_FEATURES = list(STAGES)
    cfg.MODEL.SWIN.DROP_PATH_RATE = 0.0
    torch.manual_seed(0)
    network = BackboneOutputs(D2SwinTransformer(cfg)).eval()
    program = export_program(network, list(STAGES), sample_size=(128, 160), step=32, min_size=64, max_size=512)
    path = tmp_path_factory.mktemp("onnx") / "swin.onnx"
    program.save(str(path))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    return network, onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("size", [(96, 192), (224, 96)])
def test_narrow_swin_graph_matches_pytorch_at_other_sizes(narrow_swin_session, size):
    network, session = narrow_swin_session
    image = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(sum(size)))
    with torch.no_grad():
        expected = network(image)
    got = session.run(list(STAGES), {"image": image.numpy()})
    for name, ours, reference in zip(STAGES, got, expected):
        stride = 2 ** int(name[-1])  # res2, res3: strides 4, 8
        assert ours.shape == tuple(reference.shape) == (1, reference.shape[1], size[0] // stride, size[1] // stride)
        assert float(np.abs(ours - reference.numpy()).max()) <= TOLERANCE, name
