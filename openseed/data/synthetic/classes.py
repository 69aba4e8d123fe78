"""Class vocabulary of the synthetic datasets: coloured shapes ("things") on textured backgrounds ("stuff").

Every thing class is a (colour, shape) pair named "<colour> <shape>". The 4 colours × 4 shapes are split by a Latin
square into four groups of four that each use every colour once and every shape once:

- `PANOPTIC_THINGS` (groups 0 and 1, 8 classes): panoptic masks in `synthetic_panoptic_*`;
- `BOX_THINGS` (group 2): boxes only in `synthetic_boxes_*` (absent from the panoptic set);
- `ZEROSHOT_THINGS` (group 3): only in the evaluation set `synthetic_zeroshot_val`; these names never occur in any
  training set, but each of their words does (in other combinations), so a text encoder can compose them.

Within each evaluation vocabulary of four, colour alone or shape alone identifies the class.
"""

from __future__ import annotations

from dataclasses import dataclass

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 200, 50),
    "blue": (30, 60, 230),
    "yellow": (245, 215, 20),
}
SHAPES = ("circle", "square", "triangle", "star")

# Stuff classes: (name, base RGB colour). Muted colours, so that the saturated things stand out.
STUFF: dict[str, tuple[int, int, int]] = {
    "sky": (160, 200, 238),
    "grass": (100, 138, 76),
    "water": (52, 92, 132),
    "sand": (208, 188, 146),
}


@dataclass(frozen=True)
class ThingClass:
    colour: str
    shape: str

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"

    @property
    def rgb(self) -> tuple[int, int, int]:
        return COLOURS[self.colour]


def latin_square_group(k: int) -> tuple[ThingClass, ...]:
    """Group k of the colour/shape Latin square: colour i gets shape (i + k) mod 4."""
    colours = list(COLOURS)
    return tuple(ThingClass(c, SHAPES[(i + k) % len(SHAPES)]) for i, c in enumerate(colours))


PANOPTIC_THINGS = latin_square_group(0) + latin_square_group(1)
BOX_THINGS = latin_square_group(2)
ZEROSHOT_THINGS = latin_square_group(3)
ALL_THINGS = PANOPTIC_THINGS + BOX_THINGS + ZEROSHOT_THINGS
STUFF_NAMES = tuple(STUFF)
