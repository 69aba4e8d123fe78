#!/usr/bin/env python
"""Dataset doctor: check a COCO instances / panoptic json and its images before fine-tuning on it.

    python tools/check_dataset.py --json datasets/my_data/train.json --image-root datasets/my_data/images
    python tools/check_dataset.py --json panoptic_train.json --image-root images/ --panoptic-root panoptic_train/
    python tools/check_dataset.py --dataset synthetic_panoptic_val          # a registered dataset name
    python tools/check_dataset.py --config-file C --dataset my_data_train    # a DATASETS.CUSTOM entry of C

Prints every problem (missing / unreadable images, sizes that disagree with the file, boxes outside the image or of
zero area, empty or degenerate masks, unknown category ids, duplicate ids, class names that collide after name
normalisation, thing/stuff flags), then what the training mapper will train on; exits 1 when there is an error.
The checks are in openseed/data/dataset_doctor.py.
"""

from __future__ import annotations

import argparse
import sys

from detectron2.data import MetadataCatalog

from openseed.config import setup_cfg
from openseed.data.dataset_doctor import check_coco_dataset
from openseed.data.registration.custom_coco import register_custom_datasets


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="COCO instances or panoptic json")
    parser.add_argument("--image-root", help="folder of the json's file_name entries")
    parser.add_argument("--panoptic-root", default=None, help="panoptic PNG folder (default: the json path without "
                                                              ".json)")
    parser.add_argument("--dataset", help="a registered dataset name instead of --json/--image-root")
    parser.add_argument("--config-file", default=None, help="config whose DATASETS.CUSTOM entries are registered")
    return parser


def dataset_files(name: str) -> tuple[str, str, str | None]:
    """(json, image_root, panoptic_root) of a registered dataset, from its metadata."""
    metadata = MetadataCatalog.get(name)
    json_file = metadata.get("panoptic_json") or metadata.get("json_file")
    if not json_file or not metadata.get("image_root"):
        raise SystemExit(f"dataset {name!r}: no registered COCO json / image_root (is the name registered? use "
                         "--config-file for DATASETS.CUSTOM entries)")
    panoptic_root = metadata.get("panoptic_root") if metadata.get("panoptic_json") else None
    return json_file, metadata.image_root, panoptic_root


def main(argv: list[str] | None = None) -> int:
    args = argument_parser().parse_args(argv)
    if args.config_file:
        register_custom_datasets(setup_cfg(args.config_file))
    if args.dataset:
        json_file, image_root, panoptic_root = dataset_files(args.dataset)
    elif args.json and args.image_root:
        json_file, image_root, panoptic_root = args.json, args.image_root, args.panoptic_root
    else:
        raise SystemExit("give --dataset NAME, or --json FILE with --image-root DIR")
    report = check_coco_dataset(json_file, image_root, panoptic_root)
    print(report.summary())
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
