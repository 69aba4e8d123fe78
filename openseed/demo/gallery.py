"""Demo pictures: ground truth next to predictions on a few val images, one grid PNG per kind of prediction.

| picture | dataset | vocabulary | prediction |
|---|---|---|---|
| `panoptic.png` | synthetic_panoptic_val | its 8 things + 4 stuff | panoptic segmentation |
| `instance.png` | synthetic_panoptic_val | same | instance masks of the things |
| `box_only.png` | synthetic_boxes_val_masks | the 4 box-only classes | instance masks (never trained with masks) |
| `zero_shot.png` | synthetic_zeroshot_val | the 4 unseen class names | instance masks |

Each row of a grid is one image: ground truth left, prediction right (Detectron2's `Visualizer`, segments labelled
with their class; predicted instances scoring below `score_threshold` are not drawn).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from detectron2.data import DatasetCatalog
from PIL import Image

from openseed.data.registration.common import resolve_metadata
from openseed.predictor import Predictor
from openseed.visualization import draw_ground_truth, draw_prediction, save_png, side_by_side, stack_rows
from openseed.vocabulary import Vocabulary

from .metrics import BOX_ONLY_MASK_VAL, PANOPTIC_VAL, ZERO_SHOT_VAL


@dataclass(frozen=True)
class PictureKind:
    name: str
    dataset: str
    task: str  # "panoptic" or "instance": the ground truth drawn and the prediction task


PICTURE_KINDS = (
    PictureKind("panoptic", PANOPTIC_VAL, "panoptic"),
    PictureKind("instance", PANOPTIC_VAL, "instance"),
    PictureKind("box_only", BOX_ONLY_MASK_VAL, "instance"),
    PictureKind("zero_shot", ZERO_SHOT_VAL, "instance"),
)


def draw_gallery(predictor: Predictor, output_dir: Path, num_images: int = 4, score_threshold: float = 0.25,
                 scale: float = 2.0) -> list[Path]:
    """Write one grid per `PICTURE_KINDS` entry for the first `num_images` images of its dataset; returns the paths."""
    written = []
    for kind in PICTURE_KINDS:
        vocabulary = Vocabulary.from_metadata(resolve_metadata(kind.dataset))
        rows = []
        for record in DatasetCatalog.get(kind.dataset)[:num_images]:
            image = np.asarray(Image.open(record["file_name"]).convert("RGB"))
            outputs = predictor(image, vocabulary, task=kind.task)
            truth = draw_ground_truth(record, vocabulary, kind.task, scale=scale)
            prediction = draw_prediction(image, outputs, vocabulary, kind.task, score_threshold=score_threshold,
                                         scale=scale)
            name = Path(record["file_name"]).name
            rows.append(side_by_side([truth, prediction], [f"{name}: ground truth", f"{kind.name} prediction"]))
        written.append(Path(save_png(str(output_dir / f"{kind.name}.png"), stack_rows(rows))))
    return written
