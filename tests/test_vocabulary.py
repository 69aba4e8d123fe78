"""Class-name normalisation, synonyms and the Vocabulary type."""

import pytest
from detectron2.data import MetadataCatalog

from openseed.vocabulary import Vocabulary, normalize_class_name, synonyms


@pytest.mark.parametrize(
    "name, mode, expected",
    [
        ("sky-other-merged", "reference-eval", "sky"),
        ("wall-other-merged", "consistent", "wall"),
        ("door-stuff", "reference-eval", "door"),
        ("wall-brick", "reference-eval", "wall-brick"),
        ("wall-brick", "reference-train", "brick wall"),
        ("wall-brick", "consistent", "brick wall"),
        ("Formula 1 ", "consistent", "Formula 1"),
        ("salt+pepper, ground", "consistent", "salt pepper ground"),
    ],
)
def test_normalize_class_name(name, mode, expected):
    assert normalize_class_name(name, mode) == expected


def test_unknown_mode_is_named():
    with pytest.raises(ValueError, match="bogus"):
        normalize_class_name("cat", "bogus")


def test_synonyms():
    assert synonyms("Moniter/TV") == ("moniter", "tv")
    assert synonyms("Person") == ("Person",)


def test_vocabulary_from_names_and_key():
    vocab = Vocabulary.from_names(["cat", "dog"], ["grass"])
    assert vocab.names == ("cat", "dog", "grass")
    assert vocab.thing_ids == (0, 1)
    assert vocab.key != Vocabulary.from_names(["cat"], ["dog", "grass"]).key
    assert vocab.key == Vocabulary.from_names(["cat", "dog"], ["grass"]).key
    with pytest.raises(ValueError, match="at least one"):
        Vocabulary((), ())
    with pytest.raises(ValueError, match="empty class name"):
        Vocabulary.from_names(["cat", " "])


def test_vocabulary_from_panoptic_metadata():
    meta = MetadataCatalog.get("__test_vocab_panoptic")
    meta.set(
        thing_classes=["cat"],
        stuff_classes=["cat", "grass"],
        thing_dataset_id_to_contiguous_id={1: 0},
        stuff_dataset_id_to_contiguous_id={1: 0, 2: 1},
    )
    vocab = Vocabulary.from_metadata(meta)
    assert vocab.names == ("cat", "grass") and vocab.is_thing == (True, False)
