"""Rendering of the ablation benchmark's scenes: amorphous stuff regions and shapes that may have holes.

The ablation family (`openseed.data.synthetic.ablation`) has both of OpenSeeD's discrepancies:

- task discrepancy: 2-4 stuff classes fill the image as large amorphous regions (argmax of smooth noise fields),
  competing with a few small things (stuff covers most pixels);
- data discrepancy: the box-only classes are drawn with `BOX_ONLY_SHAPES` (ring, cross, holed blob, crescent), shapes
  that never occur with mask labels and fill only part of their box.

`render_discrepancy_scene(rng, things, ...)` returns a `drawing.Scene` like `drawing.render_scene`. Masks are exactly
the pixels painted with the object's colour (no anti-aliasing); a `SceneObject.polygon` is the shape's outer outline
(V×2), its holes are only in the mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from .classes import STUFF_NAMES, ThingClass
from .drawing import Scene, SceneObject, _smooth_noise, shape_polygon, stuff_texture

BOX_ONLY_SHAPES = ("ring", "cross", "blob", "crescent")
RING_INNER_RATIO = 0.55
CROSS_HALF_WIDTH = 0.3
BLOB_HOLE_RATIO = 0.4
CRESCENT_CUT = (0.5, 0.8)  # centre offset and radius of the removed disc, as fractions of the radius
OUTLINE_VERTICES = 48


def _disc(h: int, w: int, cx: float, cy: float, radius: float) -> np.ndarray:
    canvas = np.zeros((h, w), dtype=np.uint8)
    cv2.circle(canvas, (int(round(cx)), int(round(cy))), int(round(radius)), 1, thickness=-1, lineType=cv2.LINE_8)
    return canvas.astype(bool)


def _fill(h: int, w: int, polygon: np.ndarray) -> np.ndarray:
    canvas = np.zeros((h, w), dtype=np.uint8)
    cv2.fillPoly(canvas, [np.round(polygon).astype(np.int32)], 1, lineType=cv2.LINE_8)
    return canvas.astype(bool)


def _circle_outline(cx: float, cy: float, radii: np.ndarray, angle: float = 0.0) -> np.ndarray:
    theta = np.linspace(0, 2 * np.pi, len(radii), endpoint=False) + angle
    return np.stack([cx + radii * np.cos(theta), cy + radii * np.sin(theta)], axis=1)


def _cross_polygon(cx: float, cy: float, radius: float, angle: float) -> np.ndarray:
    """A plus sign (12 vertices) inscribed in the circle (cx, cy, radius), arms `CROSS_HALF_WIDTH`·radius wide."""
    a, r = CROSS_HALF_WIDTH * radius, radius * np.cos(np.arcsin(CROSS_HALF_WIDTH))
    xy = np.array([(a, -r), (a, -a), (r, -a), (r, a), (a, a), (a, r), (-a, r), (-a, a), (-r, a), (-r, -a),
                   (-a, -a), (-a, -r)], dtype=np.float64)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return xy @ rot.T + np.array([cx, cy])


def shape_mask(rng: np.random.Generator, shape: str, h: int, w: int, cx: float, cy: float, radius: float,
               angle: float) -> tuple[np.ndarray, np.ndarray]:
    """(H×W bool mask, V×2 outer outline) of a shape inscribed in the circle (cx, cy, radius)."""
    if shape in BOX_ONLY_SHAPES:
        if shape == "cross":
            outline = _cross_polygon(cx, cy, radius, angle)
            return _fill(h, w, outline), outline
        if shape == "blob":  # a wobbly disc with an off-centre hole
            theta = np.linspace(0, 2 * np.pi, OUTLINE_VERTICES, endpoint=False)
            wobble = 1.0 + 0.16 * np.sin(3 * theta + rng.uniform(0, 2 * np.pi)) + 0.08 * np.sin(
                5 * theta + rng.uniform(0, 2 * np.pi))
            outline = _circle_outline(cx, cy, radius * wobble / 1.24, angle)
            hx, hy = cx + rng.uniform(-0.12, 0.12) * radius, cy + rng.uniform(-0.12, 0.12) * radius
            return _fill(h, w, outline) & ~_disc(h, w, hx, hy, BLOB_HOLE_RATIO * radius), outline
        outline = _circle_outline(cx, cy, np.full(OUTLINE_VERTICES, radius))
        if shape == "ring":
            return _disc(h, w, cx, cy, radius) & ~_disc(h, w, cx, cy, RING_INNER_RATIO * radius), outline
        offset, cut = CRESCENT_CUT
        direction = angle * 4  # the opening faces a random side
        cut_disc = _disc(h, w, cx + offset * radius * np.cos(direction), cy + offset * radius * np.sin(direction),
                         cut * radius)
        return _disc(h, w, cx, cy, radius) & ~cut_disc, outline
    outline = shape_polygon(shape, cx, cy, radius, angle)
    return _fill(h, w, outline), outline


def amorphous_stuff(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """Label map (H×W int, index into the names) of 2-4 amorphous regions, and the stuff class of each region."""
    count = int(rng.integers(2, len(STUFF_NAMES) + 1))
    names = tuple(str(n) for n in rng.choice(STUFF_NAMES, size=count, replace=False))
    side = min(h, w)
    fields = np.stack([_smooth_noise(rng, h, w, rng.uniform(0.3, 0.6) * side) for _ in names])
    return np.argmax(fields, axis=0).astype(np.int64), names


def render_discrepancy_scene(
    rng: np.random.Generator,
    things: Sequence[ThingClass],
    *,
    sizes: Sequence[int],
    objects_per_image: tuple[int, int],
    radius_range: tuple[float, float] = (0.1, 0.17),
) -> Scene:
    """Draw one scene; image height and width are drawn from `sizes`, the object count from `objects_per_image`.

    Objects are placed with disjoint circumscribed circles (inside the image), so they never overlap.
    """
    h, w = int(rng.choice(sizes)), int(rng.choice(sizes))
    stuff_labels, stuff_names = amorphous_stuff(rng, h, w)
    image = np.zeros((h, w, 3), dtype=np.float32)
    for index, name in enumerate(stuff_names):
        region = stuff_labels == index
        image[region] = stuff_texture(rng, name, h, w)[region]

    count = int(rng.integers(objects_per_image[0], objects_per_image[1] + 1))
    placed: list[tuple[float, float, float]] = []
    objects = []
    side = min(h, w)
    for _ in range(count):
        thing = things[int(rng.integers(len(things)))]
        radius = rng.uniform(*radius_range) * side
        for _attempt in range(50):
            cx, cy = rng.uniform(radius + 1, w - radius - 2), rng.uniform(radius + 1, h - radius - 2)
            if all(np.hypot(cx - x, cy - y) > radius + r + 3 for x, y, r in placed):
                placed.append((cx, cy, radius))
                mask, outline = shape_mask(rng, thing.shape, h, w, cx, cy, radius, rng.uniform(-0.35, 0.35))
                colour = np.asarray(thing.rgb, dtype=np.float32) + rng.integers(-18, 19, size=3)
                image[mask] = colour
                objects.append(SceneObject(thing=thing, polygon=outline, mask=mask))
                break
    image += rng.normal(0.0, 4.0, size=image.shape).astype(np.float32)
    return Scene(image=np.clip(np.round(image), 0, 255).astype(np.uint8), stuff_labels=stuff_labels,
                 stuff_names=stuff_names, objects=objects)
