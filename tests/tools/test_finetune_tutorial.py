"""docs/finetune_custom.md: every command of the tutorial runs, in order, in a scratch folder.

The commands run as written with the tutorial's two documented knobs set small: `FT_DATA` (size of the generated
custom set) and `FT_OPTS` (config overrides: the tiny CLIP-style text encoder instead of MiniLM, 64² crops and two
iterations). The starting model `output/demo/model_final.pth` is a freshly initialised tiny model (the tutorial's
first command only runs `make demo` when that file is missing), and `$DETECTRON2_DATASETS/synthetic` holds a small
generation of the demo's sets.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from detectron2.modeling import build_model

from openseed.checkpoint import save_checkpoint
from openseed.config import setup_cfg
from openseed.data.synthetic import generate_synthetic_datasets
from tests.tool_loader import repo_pythonpath

REPO_ROOT = Path(__file__).resolve().parents[2]
TUTORIAL = REPO_ROOT / "docs" / "finetune_custom.md"
SMALL_OPTS = ("MODEL.TEXT.ENCODER clip MODEL.TEXT.FREEZE_ENCODER False MODEL.TEXT.EVAL_PROMPT_ENSEMBLE False "
              "INPUT.IMAGE_SIZE 64 MODEL.DECODER.TRAIN_NUM_POINTS 256 SOLVER.MAX_ITER 2 SOLVER.LOG_PERIOD 1")


def tutorial_commands(text: str) -> list[str]:
    """The commands of the ```bash blocks, one per line (a trailing backslash continues a line)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for command in block.replace("\\\n", " ").splitlines():
            command = command.strip()
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


def test_tutorial_commands_are_extracted():
    commands = tutorial_commands(TUTORIAL.read_text())
    assert any(c.startswith("python tools/check_dataset.py") for c in commands)
    assert any("SOLVER.FINETUNE.MODE adapter" in c for c in commands)
    assert any(c.startswith("python tools/finetune_report.py") for c in commands)
    assert any(c.startswith("python tools/demo.py") and "ADAPTER_WEIGHTS" in c for c in commands)
    assert all("$FT_OPTS" in c for c in commands if c.startswith(("python tools/train_net.py",
                                                                  "python tools/finetune_report.py")))


@pytest.mark.slow  # eight tool runs: about 70 s of CPU
def test_every_tutorial_command_runs(tmp_path):
    for name in ("tools", "configs"):
        (tmp_path / name).symlink_to(REPO_ROOT / name)
    datasets = tmp_path / "datasets"
    generate_synthetic_datasets(str(datasets / "synthetic"), seed=0, num_train=4, num_val=2)
    cfg = setup_cfg(str(REPO_ROOT / "configs" / "finetune" / "synthetic_custom.yaml"), SMALL_OPTS.split())
    torch.manual_seed(0)
    save_checkpoint({"model": build_model(cfg).state_dict()}, tmp_path / "output" / "demo" / "model_final.pth")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               PYTHONPATH=repo_pythonpath(), DETECTRON2_DATASETS=str(datasets), OMP_NUM_THREADS="1",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", WANDB_MODE="offline",
               FT_DATA="--num-train 4 --num-val 2", FT_OPTS=SMALL_OPTS)
    for command in tutorial_commands(TUTORIAL.read_text()):
        result = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, timeout=300)
        assert result.returncode == 0, f"{command}\n{result.stdout[-4000:]}"

    report = (tmp_path / "output" / "ft_report" / "report.md").read_text()
    assert "| target | synthetic_custom_val: mask AP |" in report and "open-vocabulary loss" in report
    adapter = tmp_path / "output" / "ft_adapter" / "adapter_final.safetensors"
    full = tmp_path / "output" / "demo" / "model_final.pth"
    assert adapter.stat().st_size < 0.05 * full.stat().st_size
    assert sorted(p.suffix for p in (tmp_path / "output" / "ft_demo").iterdir()) and any(
        p.suffix == ".png" for p in (tmp_path / "output" / "ft_demo").rglob("*"))
