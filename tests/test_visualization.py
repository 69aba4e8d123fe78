"""Prediction pictures show the image: translucent fills, opaque outlines, untouched pixels away from segments."""

import cv2
import numpy as np
import torch
from detectron2.structures import Boxes, Instances

from openseed.visualization import MASK_ALPHA, draw_prediction
from openseed.vocabulary import Vocabulary

HEIGHT, WIDTH = 120, 160
RED = np.array([250.0, 0.0, 0.0])
GREEN = np.array([0.0, 200.0, 0.0])


def _noise_image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(60, 200, (HEIGHT, WIDTH, 3), dtype=np.uint8)


def _disk(cy: int, cx: int, radius: int) -> np.ndarray:
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2


def _shrink(mask: np.ndarray, pixels: int) -> np.ndarray:
    kernel = np.ones((2 * pixels + 1, 2 * pixels + 1), np.uint8)
    return cv2.erode(mask.astype(np.uint8), kernel).astype(bool)


def _blend(image: np.ndarray, color: np.ndarray) -> np.ndarray:
    return (1 - MASK_ALPHA) * image.astype(float) + MASK_ALPHA * color


def test_instance_mask_is_blended_outlined_and_background_unchanged():
    image = _noise_image()
    mask = _disk(70, 100, 30)
    instances = Instances((HEIGHT, WIDTH))
    instances.pred_masks = torch.from_numpy(mask)[None]
    instances.pred_boxes = Boxes(torch.tensor([[70.0, 40.0, 131.0, 101.0]]))
    instances.scores = torch.tensor([0.9])
    instances.pred_classes = torch.tensor([0])
    drawn = draw_prediction(image, {"instances": instances}, Vocabulary.from_names(["cat"]), "instance",
                            colors=[RED.tolist()], scale=1.0)
    assert drawn.shape == image.shape and drawn.dtype == np.uint8

    near_box = np.zeros((HEIGHT, WIDTH), dtype=bool)
    near_box[40 - 3: 101 + 3, 70 - 3: 131 + 3] = True
    assert np.array_equal(drawn[~near_box], image[~near_box]), "pixels away from the segment must keep their values"

    fill = _shrink(mask, 4)
    fill[:60] = False  # the label "cat 90%" sits at the top of the box
    deviation = np.abs(drawn[fill].astype(float) - _blend(image, RED)[fill])
    assert fill.sum() > 1000 and deviation.max() <= 1.0, "the fill is (1 - α)·image + α·colour"

    outline = mask & ~_shrink(mask, 1)
    outline[:60] = False
    blended = _blend(image, RED)[outline]
    line = drawn[outline].astype(float)
    assert np.abs(line - blended).mean() > 20, "the mask's border is drawn over the blended fill"
    line_color = np.median(line, axis=0)
    assert np.median(np.abs(line - line_color).max(axis=1)) < 5, "most outline pixels are one opaque colour"
    assert line_color[0] > 200 and line_color[1:].max() < 40, "the outline has the class colour (red)"


def test_panoptic_stuff_and_thing_keep_the_image_visible():
    image = _noise_image(1)
    thing = _disk(35, 50, 20)
    ids = np.where(thing, 1, 0).astype(np.int32)
    ids[70:] = 2
    segments = [{"id": 1, "isthing": True, "category_id": 0}, {"id": 2, "isthing": False, "category_id": 1}]
    vocabulary = Vocabulary.from_names(["ball"], ["grass"])
    drawn = draw_prediction(image, {"panoptic_seg": (torch.from_numpy(ids), segments)}, vocabulary, "panoptic",
                            colors=[RED.tolist(), GREEN.tolist()], scale=1.0)

    grass = np.zeros((HEIGHT, WIDTH), dtype=bool)
    grass[78:115, 5:55] = True  # inside the stuff region, away from its border and its centred label
    grass[78:115, 105:155] = True
    deviation = np.abs(drawn[grass].astype(float) - _blend(image, GREEN)[grass])
    assert deviation.max() <= 1.0
    image_detail = np.corrcoef(drawn[grass][:, 0].astype(float), image[grass][:, 0].astype(float))[0, 1]
    assert image_detail > 0.99, "the image's texture shows through the stuff fill"

    untouched = np.zeros((HEIGHT, WIDTH), dtype=bool)
    untouched[:64, 76:] = True  # unsegmented, away from the ball, its label (below it) and the grass outline
    assert np.array_equal(drawn[untouched], image[untouched]), "unsegmented pixels keep their values"
    ball = _shrink(thing, 4)
    ball_deviation = np.abs(drawn[ball].astype(float) - image[ball].astype(float)).mean(axis=1)
    assert np.median(ball_deviation) > 10 and np.median(ball_deviation) < 120, "the thing is tinted, not painted"


def test_detection_draws_boxes_only_above_the_threshold():
    image = _noise_image(2)
    instances = Instances((HEIGHT, WIDTH))
    instances.pred_boxes = Boxes(torch.tensor([[20.0, 30.0, 60.0, 90.0], [100.0, 10.0, 150.0, 50.0]]))
    instances.scores = torch.tensor([0.8, 0.2])
    instances.pred_classes = torch.tensor([0, 1])
    drawn = draw_prediction(image, {"instances": instances}, Vocabulary.from_names(["cup", "plate"]), "detection",
                            score_threshold=0.5, scale=1.0)
    changed = (drawn != image).any(axis=2)
    assert changed[30:91, 20].mean() > 0.9 and changed[90, 20:61].mean() > 0.9, "the kept box's edges are drawn"
    assert not changed[15:50, 105:150].any(), "the box scoring below the threshold is not drawn"
    assert not changed[55:85, 25:55].any(), "a box is an outline: its inside (below the label) is unchanged"
