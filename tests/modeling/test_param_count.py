"""Full-size Swin-T models: trainable parameter counts and state-dict layout equal the official ones."""

import pytest
import torch
from detectron2.modeling import build_model

from openseed.config import setup_cfg
from tests.refdata_utils import official_keys

pytestmark = pytest.mark.slow

CRITERION_BUFFERS = {"criterion_coco.empty_weight", "criterion_o365.empty_weight", "criterion.empty_weight"}


@pytest.mark.parametrize(
    "config,decoupled,expected",
    [
        ("configs/openseed/swint_decoupled_coco_o365.yaml", True, 116_235_471),
        ("configs/openseed/swint_coco_released.yaml", False, 116_179_263),
    ],
)
def test_trainable_parameters_and_state_dict_layout(refdata, config, decoupled, expected):
    torch.manual_seed(0)
    model = build_model(setup_cfg(config, ["MODEL.DEVICE", "cpu"]))
    # nn.Module.parameters() yields a shared module's tensors once (the box MLP, the decoder norm)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == expected
    ours = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    official = {key: shape for key, shape, _ in official_keys(refdata, decoupled)}
    assert set(official) - set(ours) <= CRITERION_BUFFERS
    assert set(ours) - set(official) == set()
    assert all(ours[key] == official[key] for key in ours)
