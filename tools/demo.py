#!/usr/bin/env python
"""Open-vocabulary prediction on an image or a folder: overlay PNGs and a COCO-format JSON of the predictions.

    python tools/demo.py --config-file configs/demo/openseed_demo.yaml --weights output/demo/model_final.pth \\
        --input photo.jpg --vocab "cat,dog,grass" --stuff grass --task panoptic --output out/
    python tools/demo.py --config-file C --weights W --input folder/ --vocab "red star,green circle" \\
        --task instance --output out/

`--vocab` lists the class names (comma-separated); names also given in `--stuff` are stuff classes (merged into one
region each in panoptic output), the others things. Every file of a folder is tried: files that are not readable
images are reported by name and skipped. The exit status is non-zero only when no image could be processed.
Trailing `KEY VALUE` pairs override the config (e.g. `MODEL.DEVICE cuda`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from detectron2.utils.logger import setup_logger

from openseed.demo.batch import list_inputs, predict_files
from openseed.demo.names import vocabulary_from_text
from openseed.predictor import Predictor
from openseed.utils.cli import FlagsAnywhereParser
from openseed.utils.runtime import tune_cpu_runtime
from openseed.vocabulary import Vocabulary

TASKS = ("panoptic", "instance", "semantic", "detection")


def argument_parser() -> argparse.ArgumentParser:
    parser = FlagsAnywhereParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--weights", required=True, help="trained checkpoint (e.g. output/demo/model_final.pth)")
    parser.add_argument("--input", required=True, help="an image file or a folder of images")
    parser.add_argument("--vocab", required=True, help='comma-separated class names, e.g. "cat,dog,grass"')
    parser.add_argument("--stuff", default="", help="comma-separated names of --vocab that are stuff classes")
    parser.add_argument("--task", choices=TASKS, default="panoptic")
    parser.add_argument("--output", required=True, help="output folder")
    parser.add_argument("--score-threshold", type=float, default=0.25,
                        help="instances (instance, detection) scoring below this are not drawn; all are in the JSON")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser


def vocabulary_from_args(vocab: str, stuff: str) -> Vocabulary:
    """Things = names of `vocab` not in `stuff`; stuff = names of `stuff` (also those missing from `vocab`)."""
    return vocabulary_from_text(vocab, stuff, field="--vocab")


def main(argv: list[str] | None = None) -> int:
    args = argument_parser().parse_args(argv)
    tune_cpu_runtime()  # malloc tuning, denormals flushed (openseed.utils.runtime)
    logger = setup_logger(name="openseed", abbrev_name="op")
    vocabulary = vocabulary_from_args(args.vocab, args.stuff)
    files = list_inputs(args.input)
    predictor = Predictor(args.config_file, args.weights, opts=args.opts)
    report = predict_files(predictor, files, vocabulary, args.task, Path(args.output),
                           score_threshold=args.score_threshold)
    logger.info(f"{len(report.overlays)} of {len(files)} file(s) processed; overlays and "
                f"{report.predictions or 'no predictions file'} in {args.output}")
    if report.failures:
        listed = "\n".join(f"  {reason}" for _path, reason in report.failures)
        print(f"{len(report.failures)} file(s) could not be read as images and were skipped:\n{listed}",
              file=sys.stderr)
    return 0 if report.overlays else 1


if __name__ == "__main__":
    logging.captureWarnings(True)
    sys.exit(main())
