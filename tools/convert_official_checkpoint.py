"""Convert an official OpenSeeD checkpoint into one our model loads strictly.

    python tools/convert_official_checkpoint.py INPUT OUTPUT --config-file C [--allow-mismatch] [--safetensors]
        [KEY VALUE ...]

INPUT: an official released file (plain state dict) or trainer checkpoint (`{"model": ...}`, `model.` prefix), as
`.pt`/`.pth` (loaded with `weights_only=True`) or `.safetensors`. The model is built from the config (e.g.
configs/openseed/swint_coco_released.yaml for `model_state_dict_swint_51.2ap.pt`), the weights are converted and
loaded with strict=True, and OUTPUT is written atomically: `{"model": state_dict}` with `torch.save`, or a flat
safetensors file with `--safetensors` (OUTPUT must then end in `.safetensors`). Exit status 1 with the offending
keys on stderr if the checkpoint does not fit.
"""

from __future__ import annotations

import argparse
import sys

from detectron2.modeling import build_model

import openseed.modeling  # noqa: F401  (registers the OpenSeeD meta-architecture and backbones)
from openseed.checkpoint import (
    CheckpointConversionError,
    CheckpointError,
    is_safetensors,
    load_checkpoint,
    load_official_weights,
    save_checkpoint,
)
from openseed.config import setup_cfg
from openseed.utils.cli import FlagsAnywhereParser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = FlagsAnywhereParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="official checkpoint (.pt/.pth or .safetensors)")
    parser.add_argument("output", help="converted checkpoint to write")
    parser.add_argument("--config-file", required=True, help="config of the model the weights are for")
    parser.add_argument("--allow-mismatch", action="store_true",
                        help="keep the model's initialisation for tensors whose shapes differ (reported)")
    parser.add_argument("--safetensors", action="store_true", help="write a .safetensors file")
    parser.add_argument("opts", nargs="*", help="config overrides as KEY VALUE pairs")
    return parser.parse_intermixed_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.safetensors and not is_safetensors(args.output):
        print(f"error: --safetensors needs an OUTPUT ending in .safetensors, got {args.output}", file=sys.stderr)
        return 2
    cfg = setup_cfg(args.config_file, ["MODEL.DEVICE", "cpu", *args.opts])
    model = build_model(cfg)
    try:
        report = load_official_weights(model, load_checkpoint(args.input), allow_mismatch=args.allow_mismatch)
    except (CheckpointError, CheckpointConversionError) as error:
        print(f"error: {args.input}: {error}", file=sys.stderr)
        return 1
    state = {key: tensor.detach().cpu() for key, tensor in model.state_dict().items()}
    save_checkpoint(state if is_safetensors(args.output) else {"model": state}, args.output)
    print(report.summary())
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
