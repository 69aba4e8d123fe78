"""One training step: clipping after AMP unscaling, non-finite gradients, per-dataset loss sums, config checks."""

import pytest
import torch
from detectron2.utils.events import EventStorage
from torch import nn

from openseed.config import get_cfg
from openseed.engine.launch import backend_for_device
from openseed.engine.step import JointStepTrainer, dataset_loss_sums
from openseed.utils.amp import autocast_dtype

CPU = torch.device("cpu")


class LinearLoss(nn.Module):
    """loss = w · x, so the gradient of w is x (known exactly)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(3))

    def forward(self, batch):
        return {f"{name}.loss_lin": (self.w * x).sum() for name, x in batch.items()}


def _step(model, batch, **kwargs):
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    trainer = JointStepTrainer(model, [batch], optimizer, device=CPU, **kwargs)
    with EventStorage(0) as storage:
        trainer.run_step()
    return trainer, storage


def test_clipping_uses_unscaled_gradients_under_fp16_grad_scaling():
    model = LinearLoss()
    batch = {"a": torch.tensor([3.0, 0.0, 0.0]), "b": torch.tensor([0.0, 4.0, 0.0])}
    trainer, storage = _step(model, batch, amp_dtype=torch.float16, clip_max_norm=0.01)
    assert trainer.grad_scaler.is_enabled() and trainer.grad_scaler.get_scale() == 65536.0
    # gradient (3, 4, 0), norm 5, clipped to 0.01: SGD with lr 1 moves w by exactly -grad * 0.01 / 5
    torch.testing.assert_close(model.w.detach(), torch.tensor([-0.006, -0.008, 0.0]), rtol=1e-3, atol=1e-6)
    assert storage.history("grad_norm").latest() == pytest.approx(5.0)
    assert storage.history("a.total_loss").latest() == 0.0


def test_nonfinite_gradient_stops_before_the_update_in_float32():
    model = LinearLoss()
    batch = {"a": torch.tensor([3e38, 3e38, 3e38])}  # loss w·x = 0 is finite, the gradient norm overflows
    with pytest.raises(FloatingPointError, match="gradient norm became inf"):
        _step(model, batch, clip_max_norm=0.01)
    assert torch.equal(model.w.detach(), torch.zeros(3))


def test_dataset_loss_sums():
    sums = dataset_loss_sums({"coco.loss_a": 1.0, "coco.loss_b": 2.0, "o365.loss_a": 0.5, "plain": 9.0})
    assert sums == {"coco.total_loss": 3.0, "o365.total_loss": 0.5}


@pytest.mark.parametrize("section", ["SOLVER", "TEST"])
def test_amp_dtype_follows_the_device_and_is_checked(section):
    cfg = get_cfg()
    assert autocast_dtype(cfg, section) is None  # off by default
    getattr(cfg, section).AMP.ENABLED = True
    cfg.MODEL.DEVICE = "cpu"
    assert autocast_dtype(cfg, section) is None  # float16 has no CPU autocast: float32
    getattr(cfg, section).AMP.DTYPE = "bfloat16"
    assert autocast_dtype(cfg, section) is torch.bfloat16
    getattr(cfg, section).AMP.DTYPE = "float16"
    cfg.MODEL.DEVICE = "cuda"
    assert autocast_dtype(cfg, section) is torch.float16
    getattr(cfg, section).AMP.DTYPE = "bfloat16"
    assert autocast_dtype(cfg, section) is torch.bfloat16
    getattr(cfg, section).AMP.DTYPE = "float8"
    with pytest.raises(ValueError, match=f"{section}.AMP.DTYPE"):
        autocast_dtype(cfg, section)


def test_process_group_backend_follows_the_device():
    assert backend_for_device("cpu") == "gloo"
    assert backend_for_device("cuda") == "nccl" and backend_for_device("cuda:1") == "nccl"
