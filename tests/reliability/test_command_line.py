"""Command lines as users type them: the tools' flags anywhere (also after `KEY VALUE` overrides), unknown dataset
names answered with the closest registered ones, and DDP built without deprecated arguments."""

import warnings

import pytest
import torch
import torch.distributed as dist
from detectron2.utils import comm
from torch.nn.parallel import DistributedDataParallel

from openseed.commands import eval_zeroshot
from openseed.engine import default_argument_parser
from openseed.engine.trainer import check_datasets_registered, wrap_for_distributed


@pytest.mark.parametrize("argv", [
    ["--resume", "--config-file", "c.yaml", "SOLVER.MAX_ITER", "10", "SEED", "-1"],
    ["--config-file", "c.yaml", "SOLVER.MAX_ITER", "10", "--resume", "SEED", "-1"],
    ["--config-file", "c.yaml", "SOLVER.MAX_ITER", "10", "SEED", "-1", "--resume"],
    ["SOLVER.MAX_ITER", "10", "--config-file=c.yaml", "SEED", "-1", "--resume"],
])
def test_train_net_flags_anywhere_on_the_line(argv):
    args = default_argument_parser().parse_args(argv)
    assert args.resume and args.config_file == "c.yaml"
    assert args.opts == ["SOLVER.MAX_ITER", "10", "SEED", "-1"]


def test_train_net_options_with_values_after_the_overrides():
    args = default_argument_parser().parse_args(
        ["--config-file", "c.yaml", "MODEL.WEIGHTS", "w.pth", "--num-gpus", "2", "--eval-only", "--dist-url", "auto"])
    assert (args.num_gpus, args.eval_only, args.dist_url) == (2, True, "auto")
    assert args.opts == ["MODEL.WEIGHTS", "w.pth"]


def test_eval_zeroshot_list_options_after_the_overrides():
    parser = eval_zeroshot.argument_parser()
    args = parser.parse_args(["--output", "out", "MODEL.DEVICE", "cpu", "--datasets", "a", "b", "--force"])
    assert (args.output, args.datasets, args.force, args.opts) == ("out", ["a", "b"], True, ["MODEL.DEVICE", "cpu"])


def test_unknown_dataset_names_the_closest_registered_ones():
    import openseed.data  # noqa: F401  (registers the built-in datasets)

    with pytest.raises(KeyError) as error:
        check_datasets_registered(["synthetic_panoptic_train", "synthetic_panoptic_trian", "zzqx"], "DATASETS.TRAIN")
    message = str(error.value)
    assert message.startswith("\"DATASETS.TRAIN: dataset(s) ['synthetic_panoptic_trian', 'zzqx'] are not registered")
    assert "'synthetic_panoptic_trian': closest registered names ['synthetic_panoptic_train'" in message
    assert "'zzqx': closest registered names none" in message


def test_ddp_wrapping_uses_no_deprecated_argument(tmp_path, monkeypatch):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        monkeypatch.setattr(comm, "get_world_size", lambda: 2)  # wrap as in a multi-process run
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            wrapped = wrap_for_distributed(torch.nn.Linear(2, 2), torch.device("cpu"), find_unused_parameters=False)
        assert isinstance(wrapped, DistributedDataParallel) and not wrapped.forward_sync_buffers
    finally:
        dist.destroy_process_group()
