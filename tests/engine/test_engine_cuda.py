"""Mixed-precision training on CUDA (skipped without a GPU): fp16 with a GradScaler and bf16 without one."""

import json

import pytest
import torch

from tests.engine.conftest import FAST_TINY, TINY_CONFIG, run_train_net

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_tiny_amp_training_on_cuda(tmp_path, synthetic_datasets_root, dtype):
    args = [
        "--config-file", TINY_CONFIG, *FAST_TINY,
        "MODEL.DEVICE", "cuda", "SOLVER.AMP.ENABLED", "True", "SOLVER.AMP.DTYPE", dtype,
        "OUTPUT_DIR", str(tmp_path), "SOLVER.MAX_ITER", "6", "SOLVER.CHECKPOINT_PERIOD", "3",
        "SOLVER.LOG_PERIOD", "1", "DATASETS.TEST", "()",
    ]
    result = run_train_net(args, synthetic_datasets_root)
    assert result.returncode == 0, result.stdout[-5000:]
    records = [json.loads(line) for line in (tmp_path / "metrics.json").read_text().splitlines()]
    assert [r["iteration"] for r in records] == list(range(6))
    assert all(torch.isfinite(torch.tensor(r["total_loss"])) for r in records)
    assert all(("[metric]grad_scale" in r) == (dtype == "float16") for r in records)
    assert "max_mem:" in result.stdout
    checkpoint = torch.load(tmp_path / "model_0000002.pth", weights_only=True)
    assert checkpoint["rng_states"][0]["cuda"] is not None
    if dtype == "float16":
        assert checkpoint["trainer"]["_trainer"]["grad_scaler"]["scale"] > 0
