"""Rendering of one synthetic scene: textured stuff bands with wavy borders and non-overlapping coloured shapes.

`render_scene(rng, things, ...)` returns the RGB image (uint8 H×W×3), the stuff label of every pixel and one
`SceneObject` per drawn shape (its class, its polygon and its visible mask). Everything is drawn without
anti-aliasing, so masks are exactly the pixels painted with the object's colour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from .classes import STUFF, STUFF_NAMES, ThingClass

CIRCLE_VERTICES = 40
STAR_INNER_RATIO = 0.45


@dataclass
class SceneObject:
    thing: ThingClass
    polygon: np.ndarray  # V×2 float, pixel-centre coordinates (x, y)
    mask: np.ndarray  # H×W bool


@dataclass
class Scene:
    image: np.ndarray  # H×W×3 uint8 RGB
    stuff_labels: np.ndarray  # H×W int, index into `stuff_names`
    stuff_names: tuple[str, ...]  # stuff class of each band, top to bottom
    objects: list[SceneObject]


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: float, cell_y: float | None = None) -> np.ndarray:
    """Zero-mean, roughly unit-variance noise with features of about `cell` pixels (H×W float32)."""
    cell_y = cell if cell_y is None else cell_y
    grid = rng.standard_normal((int(h / cell_y) + 2, int(w / cell) + 2)).astype(np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


def stuff_texture(rng: np.random.Generator, name: str, h: int, w: int) -> np.ndarray:
    """An H×W×3 float32 texture in [0, 255] for a stuff class."""
    base = np.asarray(STUFF[name], dtype=np.float32)
    texture = np.broadcast_to(base, (h, w, 3)).copy()
    ys = np.arange(h, dtype=np.float32)[:, None]
    xs = np.arange(w, dtype=np.float32)[None, :]
    if name == "sky":
        texture += (ys / max(h, 1) * 30.0)[..., None]  # lighter towards the horizon
        clouds = np.clip(_smooth_noise(rng, h, w, 24.0) - 0.6, 0.0, None) * 60.0
        texture += clouds[..., None]
    elif name == "grass":
        blades = _smooth_noise(rng, h, w, 2.0, 9.0) * 16.0
        texture += blades[..., None] * np.array([0.5, 1.0, 0.4], dtype=np.float32)
    elif name == "water":
        phase = rng.uniform(0, 2 * np.pi)
        period = rng.uniform(6.0, 12.0)
        waves = np.sin(2 * np.pi * ys / period + 0.7 * np.sin(xs / 17.0) + phase) * 14.0
        texture += waves[..., None] * np.array([0.6, 0.8, 1.0], dtype=np.float32)
    elif name == "sand":
        grain = rng.standard_normal((h, w)).astype(np.float32) * 9.0 + _smooth_noise(rng, h, w, 16.0) * 8.0
        texture += grain[..., None]
    else:
        raise ValueError(f"no texture for stuff class {name!r}; known: {STUFF_NAMES}")
    return texture


def shape_polygon(shape: str, cx: float, cy: float, radius: float, angle: float) -> np.ndarray:
    """Vertices (V×2, x/y) of a shape inscribed in the circle (cx, cy, radius), rotated by `angle` radians."""
    if shape == "circle":
        theta = np.linspace(0, 2 * np.pi, CIRCLE_VERTICES, endpoint=False)
        radii = np.full_like(theta, radius)
    elif shape == "square":
        theta = np.pi / 4 + np.arange(4) * np.pi / 2
        radii = np.full(4, radius)
    elif shape == "triangle":
        theta = -np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        radii = np.full(3, radius)
    elif shape == "hexagon":
        theta = np.arange(6) * np.pi / 3
        radii = np.full(6, radius)
    elif shape == "diamond":  # a rhombus, taller than wide
        theta = -np.pi / 2 + np.arange(4) * np.pi / 2
        radii = np.where(np.arange(4) % 2 == 0, radius, radius * 0.6)
    elif shape == "star":
        theta = -np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, radius, radius * STAR_INNER_RATIO)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    theta = theta + angle
    return np.stack([cx + radii * np.cos(theta), cy + radii * np.sin(theta)], axis=1)


def _stuff_bands(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """Label map of 1-3 horizontal bands with wavy borders, and the stuff class of each band."""
    num_bands = int(rng.choice([1, 2, 2, 2, 3]))
    names = tuple(str(n) for n in rng.choice(STUFF_NAMES, size=num_bands, replace=False))
    labels = np.zeros((h, w), dtype=np.int64)
    xs = np.arange(w)
    fractions = np.sort(rng.uniform(0.25, 0.75, size=num_bands - 1))
    ys = np.arange(h)[:, None]
    for fraction in fractions:
        amplitude = rng.uniform(0.02, 0.06) * h
        period = rng.uniform(0.5, 1.5) * w
        border = fraction * h + amplitude * np.sin(2 * np.pi * xs / period + rng.uniform(0, 2 * np.pi))
        labels += (ys >= border[None, :]).astype(np.int64)
    return labels, names


def _place_objects(
    rng: np.random.Generator,
    h: int,
    w: int,
    things: Sequence[ThingClass],
    count: int,
    radius_range: tuple[float, float],
) -> list[tuple[ThingClass, np.ndarray]]:
    """Non-overlapping (class, polygon) pairs: circumscribed circles are disjoint and inside the image."""
    placed: list[tuple[float, float, float]] = []
    result = []
    side = min(h, w)
    for _ in range(count):
        thing = things[int(rng.integers(len(things)))]
        radius = rng.uniform(*radius_range) * side
        for _attempt in range(50):
            cx = rng.uniform(radius + 1, w - radius - 2)
            cy = rng.uniform(radius + 1, h - radius - 2)
            if all(np.hypot(cx - x, cy - y) > radius + r + 3 for x, y, r in placed):
                placed.append((cx, cy, radius))
                angle = rng.uniform(-0.35, 0.35)
                result.append((thing, shape_polygon(thing.shape, cx, cy, radius, angle)))
                break
    return result


def render_scene(
    rng: np.random.Generator,
    things: Sequence[ThingClass],
    *,
    sizes: Sequence[int],
    objects_per_image: tuple[int, int],
    radius_range: tuple[float, float] = (0.14, 0.24),
) -> Scene:
    """Draw one scene; image height and width are drawn from `sizes`, the object count from `objects_per_image`."""
    h, w = int(rng.choice(sizes)), int(rng.choice(sizes))
    stuff_labels, stuff_names = _stuff_bands(rng, h, w)
    image = np.zeros((h, w, 3), dtype=np.float32)
    for index, name in enumerate(stuff_names):
        region = stuff_labels == index
        image[region] = stuff_texture(rng, name, h, w)[region]

    count = int(rng.integers(objects_per_image[0], objects_per_image[1] + 1))
    objects = []
    for thing, polygon in _place_objects(rng, h, w, things, count, radius_range):
        canvas = np.zeros((h, w), dtype=np.uint8)
        cv2.fillPoly(canvas, [np.round(polygon).astype(np.int32)], 1, lineType=cv2.LINE_8)
        mask = canvas.astype(bool)
        colour = np.asarray(thing.rgb, dtype=np.float32) + rng.integers(-18, 19, size=3)
        shading = np.linspace(-10.0, 10.0, w, dtype=np.float32)[None, :] * rng.choice([-1.0, 1.0])
        paint = np.broadcast_to(colour[None, None, :] + shading[..., None], (h, w, 3))
        image[mask] = paint[mask]
        objects.append(SceneObject(thing=thing, polygon=polygon, mask=mask))

    image += rng.normal(0.0, 4.0, size=image.shape).astype(np.float32)
    return Scene(
        image=np.clip(np.round(image), 0, 255).astype(np.uint8),
        stuff_labels=stuff_labels,
        stuff_names=stuff_names,
        objects=objects,
    )
