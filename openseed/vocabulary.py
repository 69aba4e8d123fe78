"""Vocabularies: the class names a model is asked about, with thing/stuff flags, and their normalisation.

A `Vocabulary` is passed explicitly to the model (never stored in global metadata). Data mappers, the text encoder
and the evaluators share `normalize_class_name` and `synonyms`, so training and evaluation see the same text.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

_SUFFIXES = ("-other", "-merged", "-stuff")
NORMALISATION_MODES = ("consistent", "reference-train", "reference-eval")


def normalize_class_name(name: str, mode: str = "consistent") -> str:
    """Text used for a class name before prompt templating.

    All modes strip surrounding whitespace, remove "-other", "-merged" and "-stuff" wherever they occur (as the official
    code does: "sky-other-merged" -> "sky"), remove commas and replace
    "+" by a space. `"reference-train"` additionally rewrites "a-b" as "b a" ("wall-brick" -> "brick wall"), as the
    official code does for COCO names in training only (docs/official_behaviours.md §4.3); `"consistent"` applies that rewrite too, so
    training and evaluation see the same words; `"reference-eval"` does not rewrite (the official evaluation path).
    """
    if mode not in NORMALISATION_MODES:
        raise ValueError(f"unknown class-name normalisation {mode!r}; expected one of {NORMALISATION_MODES}")
    text = name.strip()
    for suffix in _SUFFIXES:
        text = text.replace(suffix, "")
    text = text.replace(",", "").replace("+", " ")
    if mode != "reference-eval":
        parts = text.split("-")
        if len(parts) == 2 and all(parts):
            text = f"{parts[1]} {parts[0]}"
    return re.sub(r"\s+", " ", text).strip()


def synonyms(name: str) -> tuple[str, ...]:
    """Objects365-style synonyms: "Moniter/TV" -> ("moniter", "tv"); a name without "/" is its own only synonym."""
    parts = tuple(p.strip().lower() for p in name.split("/") if p.strip())
    if not parts:
        raise ValueError(f"empty class name {name!r}")
    return parts if "/" in name else (name.strip(),)


@dataclass(frozen=True)
class Vocabulary:
    """Class names (index = contiguous class id) and, per class, whether it is a countable "thing".

    Attributes:
        names: class names as the dataset spells them (normalised only when turned into text).
        is_thing: one flag per class; stuff classes are matched to background queries and merged in panoptic output.
    """

    names: tuple[str, ...]
    is_thing: tuple[bool, ...]

    def __post_init__(self):
        if len(self.names) == 0:
            raise ValueError("a vocabulary needs at least one class name")
        if len(self.names) != len(self.is_thing):
            raise ValueError(f"{len(self.names)} names but {len(self.is_thing)} thing flags")
        empty = [i for i, n in enumerate(self.names) if not str(n).strip()]
        if empty:
            raise ValueError(f"empty class name at index {empty}")

    def __len__(self) -> int:
        return len(self.names)

    @property
    def key(self) -> str:
        """Stable hash of the names and flags, for caching embeddings."""
        text = "\x1f".join(self.names) + "\x1e" + "".join("1" if t else "0" for t in self.is_thing)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    @property
    def thing_ids(self) -> tuple[int, ...]:
        return tuple(i for i, t in enumerate(self.is_thing) if t)

    @classmethod
    def from_names(cls, things, stuff=()) -> Vocabulary:
        """Things first, then stuff: "cat,dog" + "grass,sky" -> 4 classes, 2 of them things."""
        things, stuff = [str(n) for n in things], [str(n) for n in stuff]
        return cls(tuple(things + stuff), tuple([True] * len(things) + [False] * len(stuff)))

    @classmethod
    def from_metadata(cls, metadata) -> Vocabulary:
        """Vocabulary of a Detectron2 dataset's metadata (read only).

        Panoptic metadata (with `stuff_dataset_id_to_contiguous_id`) lists every class in `stuff_classes` and the
        thing flags come from `thing_dataset_id_to_contiguous_id`; detection/instance metadata gives `thing_classes`
        (all things); semantic-only metadata gives `stuff_classes` (all stuff).
        """
        thing_classes = list(getattr(metadata, "thing_classes", None) or [])
        stuff_classes = list(getattr(metadata, "stuff_classes", None) or [])
        name = getattr(metadata, "name", "?")
        if stuff_classes and thing_classes and hasattr(metadata, "stuff_dataset_id_to_contiguous_id"):
            thing_ids = set(getattr(metadata, "thing_dataset_id_to_contiguous_id", {}).values())
            return cls(tuple(stuff_classes), tuple(i in thing_ids for i in range(len(stuff_classes))))
        if thing_classes:
            return cls(tuple(thing_classes), (True,) * len(thing_classes))
        if stuff_classes:
            return cls(tuple(stuff_classes), (False,) * len(stuff_classes))
        raise ValueError(f"dataset {name!r} has neither thing_classes nor stuff_classes in its metadata")


def dataset_vocabulary(name: str) -> Vocabulary:
    """The vocabulary of registered dataset `name` (`Vocabulary.from_metadata` of its `MetadataCatalog` entry)."""
    from detectron2.data import MetadataCatalog

    return Vocabulary.from_metadata(MetadataCatalog.get(name))
