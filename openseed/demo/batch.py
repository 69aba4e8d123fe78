"""Prediction over an image or a folder of images (tools/demo.py): overlay PNGs and one COCO-format JSON.

Every regular file of a folder is tried (sorted by name, not recursive); a file that is not a readable image is
reported with the reason and skipped, and the others are processed. Outputs in `output_dir`: `<stem>.png` per image
(the prediction drawn over the image; `<stem>_2.png`, ... when stems repeat) and `predictions.json`
(`coco_export`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from openseed.data.mappers.robust import BadSampleError
from openseed.predictor import Predictor, load_rgb_image
from openseed.visualization import draw_prediction, save_png
from openseed.vocabulary import Vocabulary

from .coco_export import CocoPredictionWriter

logger = logging.getLogger(__name__)
PREDICTIONS_FILE = "predictions.json"


@dataclass
class BatchReport:
    """Outcome of `predict_files`: the overlays written and the files that could not be read (path, reason)."""

    overlays: list[Path] = field(default_factory=list)
    failures: list[tuple[Path, str]] = field(default_factory=list)
    predictions: Path | None = None


def list_inputs(path: str | Path) -> list[Path]:
    """`[path]` for a file, the regular files of a folder (sorted); a missing path raises naming it."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file())
    raise FileNotFoundError(f"--input {path}: no such file or folder")


def _unique_overlay_path(output_dir: Path, stem: str, used: set[str]) -> Path:
    name, count = f"{stem}.png", 1
    while name in used:
        count += 1
        name = f"{stem}_{count}.png"
    used.add(name)
    return output_dir / name


def predict_files(predictor: Predictor, files: list[Path], vocabulary: Vocabulary, task: str, output_dir: Path, *,
                  score_threshold: float = 0.25, progress: bool = True) -> BatchReport:
    """Predict `task` on every readable image of `files`; write overlays and `predictions.json` to `output_dir`."""
    output_dir.mkdir(parents=True, exist_ok=True)
    writer = CocoPredictionWriter(vocabulary, task)
    report = BatchReport()
    used: set[str] = set()
    for path in tqdm(files, desc="images", unit="image", disable=not progress or len(files) < 2):
        try:
            image = load_rgb_image(path)
        except BadSampleError as error:
            logger.warning(f"skipping a file: {error}")
            report.failures.append((path, str(error)))
            continue
        outputs = predictor(image, vocabulary, task=task)
        overlay = draw_prediction(image, outputs, vocabulary, task, score_threshold=score_threshold, scale=1.0)
        report.overlays.append(Path(save_png(str(_unique_overlay_path(output_dir, path.stem, used)), overlay)))
        writer.add(path.name, image.shape[0], image.shape[1], outputs)
    if report.overlays:
        report.predictions = output_dir / PREDICTIONS_FILE
        writer.write(str(report.predictions))
    return report
