"""Pictures of predictions and ground truth over the image, side-by-side panels and the loss curve.

    picture = draw_prediction(image_rgb, outputs, vocabulary, "panoptic")        # H'×W'×3 uint8 RGB
    truth = draw_ground_truth(dataset_dict, vocabulary, "instance")
    save_png("out.png", side_by_side([truth, picture], ["ground truth", "prediction"]))
    plot_loss_curve("output/demo/train/metrics.json", "output/demo/loss_curve.png")

Class `k` of a vocabulary has one colour (Detectron2's colour map, or the colours given), used for instances and
stuff in every picture, and every segment is labelled with its class name (instances also with their score). As in
Detectron2's `Visualizer`, masks are filled translucently (`MASK_ALPHA`: the image stays visible under them) and
outlined, boxes drawn as outlines, labels written on a dark box; the fills and outlines are drawn with numpy and
OpenCV (fast for ragged masks), boxes and text by Detectron2's `Visualizer`. Pixels away from every segment keep
the image's values. Images are RGB uint8 H×W×3 throughout.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import cv2
import numpy as np
from detectron2.data.catalog import Metadata
from detectron2.structures import BoxMode
from detectron2.utils.colormap import colormap
from detectron2.utils.visualizer import GenericMask, Visualizer
from panopticapi.utils import rgb2id
from PIL import Image

from openseed.structures import OUTPUT_TASKS
from openseed.vocabulary import Vocabulary

TASKS_DRAWN = OUTPUT_TASKS
TITLE_HEIGHT = 22
MASK_ALPHA = 0.5  # opacity of a mask's fill: drawn = (1 - α)·image + α·colour (Detectron2's default image mode)


def class_colors(num_classes: int) -> list[list[int]]:
    """A fixed RGB colour per class index (Detectron2's colour map, cycled)."""
    palette = colormap(rgb=True, maximum=255).astype(int).tolist()
    return [palette[k % len(palette)] for k in range(num_classes)]


def vocabulary_metadata(vocabulary: Vocabulary, colors: Sequence[Sequence[int]] | None = None) -> Metadata:
    """Visualizer metadata: every class in both `thing_classes` and `stuff_classes` (index = vocabulary index)."""
    colors = [list(c) for c in colors] if colors is not None else class_colors(len(vocabulary))
    if len(colors) != len(vocabulary):
        raise ValueError(f"{len(colors)} colours for a vocabulary of {len(vocabulary)} classes")
    names = list(vocabulary.names)
    return Metadata(name="openseed-vocabulary", thing_classes=names, stuff_classes=names, thing_colors=colors,
                    stuff_colors=colors)


def draw_segments(image_rgb: np.ndarray, masks: Sequence[np.ndarray | None], colors: Sequence[Sequence[int]],
                  labels: Sequence[str], *, boxes: np.ndarray | None = None, scale: float = 1.0,
                  alpha: float = MASK_ALPHA) -> np.ndarray:
    """Segments over the image; returns (H·scale)×(W·scale)×3 uint8 RGB.

    Each mask (bool H×W, or None for a box-only segment) is filled translucently, (1 - α)·image + α·colour (later
    masks over earlier ones), then outlined opaquely in its colour just inside its border. Boxes (N×4 xyxy pixels)
    are outlined and labelled at a corner by Detectron2's `Visualizer.overlay_instances`; without boxes a segment is
    labelled at the median pixel of its largest connected part (as Detectron2 places mask labels). Pixels away from
    every segment keep the image's values.
    """
    if not len(masks) == len(colors) == len(labels) or (boxes is not None and len(boxes) != len(masks)):
        raise ValueError(f"{len(masks)} masks, {len(colors)} colours, {len(labels)} labels"
                         + ("" if boxes is None else f", {len(boxes)} boxes") + ": one of each per segment")
    blended = image_rgb.astype(np.float32)
    painted = [(mask, np.asarray(color, dtype=np.float32)) for mask, color in zip(masks, colors) if mask is not None]
    for mask, color in painted:
        blended[mask] = (1.0 - alpha) * blended[mask] + alpha * color
    width = max(1, round(min(image_rgb.shape[:2]) / 300))
    kernel = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
    for mask, color in painted:
        blended[mask & ~cv2.erode(mask.astype(np.uint8), kernel, borderType=cv2.BORDER_REPLICATE).astype(bool)] = color
    visualizer = Visualizer(np.round(blended).astype(np.uint8), metadata=Metadata(), scale=scale)
    colors01 = [np.asarray(color, dtype=np.float64) / 255.0 for color in colors]
    if boxes is not None:
        return visualizer.overlay_instances(boxes=np.asarray(boxes).reshape(-1, 4), labels=list(labels),
                                            assigned_colors=colors01).get_image()
    for mask, color, label in zip(masks, colors01, labels):
        position = _label_position(mask) if mask is not None else None
        if position is not None:
            visualizer.draw_text(label, position, color=color)
    return visualizer.output.get_image()


def _label_position(mask: np.ndarray) -> tuple[float, float] | None:
    """(x, y) of the median pixel of the mask's largest 8-connected part; None for an empty mask."""
    count, parts, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count < 2:
        return None
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    ys, xs = np.nonzero(parts == largest)
    return float(np.median(xs)), float(np.median(ys))


def draw_prediction(image_rgb: np.ndarray, outputs: dict, vocabulary: Vocabulary, task: str, *,
                    score_threshold: float = 0.5, colors=None, scale: float = 2.0,
                    alpha: float = MASK_ALPHA) -> np.ndarray:
    """Draw one task's output of the model (`outputs` = its dict for this image) over the image (`draw_segments`).

    Instances (instance, detection) below `score_threshold` are not drawn; semantic draws the per-pixel argmax.
    Returns the picture, (H·scale)×(W·scale)×3 uint8 RGB.
    """
    if task not in TASKS_DRAWN:
        raise ValueError(f"task must be one of {TASKS_DRAWN}, got {task!r}")
    palette = vocabulary_metadata(vocabulary, colors).thing_colors
    names = vocabulary.names
    if task == "panoptic":
        ids, segments_info = outputs["panoptic_seg"]
        return _draw_panoptic(image_rgb, ids.to("cpu").numpy(), segments_info, names, palette, scale, alpha)
    if task == "semantic":
        labels = outputs["sem_seg"].argmax(dim=0).to("cpu").numpy()
        classes = [int(k) for k in np.unique(labels)]
        return draw_segments(image_rgb, [labels == k for k in classes], [palette[k] for k in classes],
                             [names[k] for k in classes], scale=scale, alpha=alpha)
    instances = outputs["instances"].to("cpu")
    instances = instances[instances.scores >= score_threshold]
    classes = instances.pred_classes.tolist()
    masks = list(instances.pred_masks.numpy()) if instances.has("pred_masks") else [None] * len(instances)
    labels = [f"{names[c]} {score * 100:.0f}%" for c, score in zip(classes, instances.scores.tolist())]
    return draw_segments(image_rgb, masks, [palette[c] for c in classes], labels,
                         boxes=instances.pred_boxes.tensor.numpy(), scale=scale, alpha=alpha)


def _draw_panoptic(image_rgb: np.ndarray, ids: np.ndarray, segments_info: Sequence[dict], names, palette,
                   scale: float, alpha: float) -> np.ndarray:
    """Panoptic segments (ids H×W, `segments_info` with `id` and `category_id`), each labelled with its class."""
    classes = [int(segment["category_id"]) for segment in segments_info]
    return draw_segments(image_rgb, [ids == segment["id"] for segment in segments_info],
                         [palette[c] for c in classes], [names[c] for c in classes], scale=scale, alpha=alpha)


def ground_truth_instances(dataset_dict: dict) -> tuple[np.ndarray, list[int], list[np.ndarray]]:
    """Boxes (N×4 xyxy), classes and bool H×W masks (empty list for box-only annotations) of a dataset dict's
    thing instances: its `annotations`, else the thing segments of its panoptic PNG."""
    if "annotations" in dataset_dict:
        annotations = [a for a in dataset_dict["annotations"] if not a.get("iscrowd", 0)]
        boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in annotations]
        classes = [int(a["category_id"]) for a in annotations]
        height, width = dataset_dict["height"], dataset_dict["width"]
        masks = [GenericMask(a["segmentation"], height, width).mask.astype(bool)
                 for a in annotations if "segmentation" in a]
        return np.asarray(boxes, dtype=np.float32).reshape(-1, 4), classes, masks
    ids = read_panoptic_ids(dataset_dict["pan_seg_file_name"])
    things = [s for s in dataset_dict["segments_info"] if s["isthing"] and not s.get("iscrowd", 0)]
    masks = [ids == s["id"] for s in things]
    boxes = [BoxMode.convert(s["bbox"], BoxMode.XYWH_ABS, BoxMode.XYXY_ABS) for s in things]
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4), [int(s["category_id"]) for s in things], masks


def read_panoptic_ids(path: str) -> np.ndarray:
    """Segment ids (int H×W) of a COCO panoptic PNG (id = R + 256·G + 256²·B)."""
    return rgb2id(np.asarray(Image.open(path).convert("RGB"), dtype=np.uint32))


def draw_ground_truth(dataset_dict: dict, vocabulary: Vocabulary, kind: str, *, colors=None,
                      scale: float = 2.0, alpha: float = MASK_ALPHA) -> np.ndarray:
    """Draw a dataset dict's annotations: `kind` "panoptic" (its panoptic PNG) or "instance" (thing masks/boxes)."""
    image = np.asarray(Image.open(dataset_dict["file_name"]).convert("RGB"))
    palette = vocabulary_metadata(vocabulary, colors).thing_colors
    if kind == "panoptic":
        ids = read_panoptic_ids(dataset_dict["pan_seg_file_name"])
        return _draw_panoptic(image, ids, dataset_dict["segments_info"], vocabulary.names, palette, scale, alpha)
    if kind != "instance":
        raise ValueError(f"ground-truth kind must be 'panoptic' or 'instance', got {kind!r}")
    boxes, classes, masks = ground_truth_instances(dataset_dict)
    return draw_segments(image, masks or [None] * len(classes), [palette[c] for c in classes],
                         [vocabulary.names[c] for c in classes], boxes=boxes, scale=scale, alpha=alpha)


def with_title(image: np.ndarray, title: str) -> np.ndarray:
    """The image with a white title bar above it."""
    bar = np.full((TITLE_HEIGHT, image.shape[1], 3), 255, dtype=np.uint8)
    cv2.putText(bar, title, (4, TITLE_HEIGHT - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([bar, image], axis=0)


def side_by_side(images: Sequence[np.ndarray], titles: Sequence[str] | None = None, gap: int = 6) -> np.ndarray:
    """Panels left to right (bottom-padded to a common height), each with its title, separated by white gaps."""
    if not images:
        raise ValueError("side_by_side needs at least one image")
    titles = list(titles) if titles is not None else [""] * len(images)
    if len(titles) != len(images):
        raise ValueError(f"{len(titles)} titles for {len(images)} images")
    panels = [with_title(image, title) if title else image for image, title in zip(images, titles)]
    return _stack(panels, axis=1, gap=gap)


def stack_rows(rows: Sequence[np.ndarray], gap: int = 6) -> np.ndarray:
    """Rows top to bottom (right-padded to a common width), separated by white gaps."""
    if not rows:
        raise ValueError("stack_rows needs at least one row")
    return _stack(list(rows), axis=0, gap=gap)


def _stack(panels: list[np.ndarray], axis: int, gap: int) -> np.ndarray:
    other = 1 - axis
    extent = max(p.shape[other] for p in panels)
    parts = []
    for index, panel in enumerate(panels):
        pad = [(0, 0), (0, 0), (0, 0)]
        pad[other] = (0, extent - panel.shape[other])
        parts.append(np.pad(panel, pad, constant_values=255))
        if index < len(panels) - 1:
            shape = [extent, extent, 3]
            shape[axis] = gap
            parts.append(np.full(shape, 255, dtype=np.uint8))
    return np.concatenate(parts, axis=axis)


def save_png(path: str, image_rgb: np.ndarray) -> str:
    """Write an RGB uint8 image as PNG (creating the folder); returns the path."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray(np.ascontiguousarray(image_rgb)).save(path)
    return path


def read_training_metrics(path: str) -> list[dict]:
    """The records of Detectron2's `metrics.json` (one JSON object per line)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"training metrics file {path} does not exist")
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}, line {number}: not JSON ({error})") from error
    return records


def plot_loss_curve(metrics_path: str, output_path: str, title: str = "training loss") -> str:
    """Plot `total_loss` and every `<dataset>.total_loss` of a training `metrics.json` against the iteration."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    records = [r for r in read_training_metrics(metrics_path) if "total_loss" in r and "iteration" in r]
    if not records:
        raise ValueError(f"{metrics_path} holds no `total_loss` records to plot")
    keys = ["total_loss"] + sorted({k for r in records for k in r if k.endswith(".total_loss")})
    figure, axis = plt.subplots(figsize=(7, 4), dpi=100)
    for key in keys:
        points = [(r["iteration"] + 1, r[key]) for r in records if key in r]
        axis.plot(*zip(*points), label=key, linewidth=2 if key == "total_loss" else 1)
    axis.set_xlabel("iteration")
    axis.set_ylabel("loss (log scale)")
    axis.set_yscale("log")
    axis.set_title(title)
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
    figure.savefig(output_path)
    plt.close(figure)
    return output_path
