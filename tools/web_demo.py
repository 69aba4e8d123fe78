#!/usr/bin/env python
"""Segment any image with any words in the browser: a local gradio app over a trained OpenSeeD.

    make demo && make web                       # the `make demo` model at http://127.0.0.1:7860
    python tools/web_demo.py --config-file configs/demo/openseed_demo.yaml --weights output/demo/model_final.pth \\
        --host 127.0.0.1 --port 7860 [KEY VALUE ...]

The page (openseed/demo/web_app.py) takes a picture, class names (comma-separated, stuff names in their own field),
the task, optional box prompts ("x0,y0,x1,y1; ...") and a score threshold, and shows the prediction over the image,
a segments table and the COCO-format JSON to download. Nothing is shared or fetched from the internet. Trailing
`KEY VALUE` pairs override the config (e.g. `MODEL.DEVICE cuda`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from detectron2.utils.logger import setup_logger

DEMO_CONFIG = "configs/demo/openseed_demo.yaml"
DEMO_WEIGHTS = "output/demo/model_final.pth"


def argument_parser() -> argparse.ArgumentParser:
    from openseed.demo.web_requests import DEFAULT_MAX_IMAGE_PIXELS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", default=DEMO_CONFIG, metavar="FILE", help=f"default: {DEMO_CONFIG}")
    parser.add_argument("--weights", default=DEMO_WEIGHTS, help=f"trained checkpoint (default: {DEMO_WEIGHTS})")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default: this machine only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--max-image-pixels", type=int, default=DEFAULT_MAX_IMAGE_PIXELS,
                        help="larger uploads are refused with a message (default: %(default)s)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser


def check_files(config_file: str, weights: str) -> None:
    """A missing config or checkpoint stops the tool with a message saying how to get it."""
    if not Path(config_file).is_file():
        raise SystemExit(f"web_demo: config file {config_file} does not exist")
    if not Path(weights).is_file():
        hint = "run `make demo` first to train it" if weights == DEMO_WEIGHTS else "pass --weights PATH"
        raise SystemExit(f"web_demo: checkpoint {weights} does not exist: {hint}")


def main(argv: list[str] | None = None) -> int:
    args = argument_parser().parse_args(argv)
    check_files(args.config_file, args.weights)
    setup_logger(name="openseed", abbrev_name="op")
    from openseed.demo.web_app import build_app, launch_options
    from openseed.demo.web_requests import WebDemoService
    from openseed.predictor import Predictor

    predictor = Predictor(args.config_file, args.weights, opts=args.opts)
    app = build_app(WebDemoService(predictor, max_image_pixels=args.max_image_pixels))
    app.queue(default_concurrency_limit=1).launch(**launch_options(args.host, args.port))
    return 0


if __name__ == "__main__":
    logging.captureWarnings(True)
    sys.exit(main())
