"""Class names typed by a person (tools/demo.py arguments, the web demo's fields) -> a `Vocabulary`.

    vocabulary_from_text("cat, dog, grass", "grass, sky")   # things cat, dog; stuff grass, sky

Names are comma-separated and stripped; a name given twice counts once (its first place).
"""

from __future__ import annotations

from openseed.vocabulary import Vocabulary


def split_names(text: str) -> list[str]:
    """The comma-separated, stripped, non-empty names of `text`, each once, in order."""
    return list(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))


def vocabulary_from_text(names: str, stuff: str, field: str = "the vocabulary") -> Vocabulary:
    """Things = `names` not in `stuff`; stuff = the names of `stuff` (also those missing from `names`).

    Raises ValueError naming `field` when no name is given at all.
    """
    all_names, stuff_names = split_names(names), split_names(stuff)
    if not all_names and not stuff_names:
        raise ValueError(f"{field} is empty: give at least one class name (comma-separated)")
    things = [name for name in all_names if name not in stuff_names]
    return Vocabulary.from_names(things, stuff_names)
