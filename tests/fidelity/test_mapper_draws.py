"""The LSJ draw-source seam (`openseed/data/mappers/draws.py`): the default draws exactly as Detectron2's stock
augmentations, any `uniform(low, high)` source drives it, and `ReplayDraws` refuses a replay that does not fit."""

import numpy as np
import pytest
from detectron2.data import transforms as T

from openseed.data.mappers import ReplayDraws, build_lsj_augmentation

SIZE = 64


def stock_lsj(random_flip: str) -> list:
    """Detectron2's own RandomFlip / ResizeScale / FixedSizeCrop, as the official mappers build them."""
    flip = [T.RandomFlip(horizontal=random_flip == "horizontal", vertical=random_flip == "vertical")]
    return flip + [T.ResizeScale(min_scale=0.1, max_scale=2.0, target_height=SIZE, target_width=SIZE),
                   T.FixedSizeCrop(crop_size=(SIZE, SIZE))]


def ours(random_flip: str, **kwargs) -> list:
    return build_lsj_augmentation(image_size=SIZE, min_scale=0.1, max_scale=2.0, random_flip=random_flip, **kwargs)


def images(count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(int(rng.integers(20, 140)), int(rng.integers(20, 140)), 3), dtype=np.uint8)
            for _ in range(count)]


def apply(augmentations: list, image: np.ndarray) -> np.ndarray:
    aug_input = T.AugInput(image.copy())
    T.AugmentationList(augmentations)(aug_input)
    return aug_input.image


@pytest.mark.parametrize("random_flip", ["horizontal", "vertical"])
def test_default_draws_equal_detectron2_stock_augmentations(random_flip):
    samples = images(40, seed=1)
    np.random.seed(123)
    expected = [apply(stock_lsj(random_flip), image) for image in samples]
    np.random.seed(123)
    got = [apply(ours(random_flip), image) for image in samples]
    for want, have in zip(expected, got):
        np.testing.assert_array_equal(have, want)
    assert np.random.uniform() == pytest.approx(np.random.RandomState(123).uniform(size=3 * 40 + 1)[-1])


def test_numpy_generator_is_a_draw_source_and_leaves_the_global_stream_alone():
    image = images(1, seed=2)[0]
    np.random.seed(5)
    first = apply(ours("horizontal", draws=np.random.default_rng(7)), image)
    assert np.random.uniform() == np.random.RandomState(5).uniform()
    np.testing.assert_array_equal(apply(ours("horizontal", draws=np.random.default_rng(7)), image), first)


def test_replayed_draws_set_flip_scale_and_crop():
    """Flip u = 0.2 (< 0.5: flipped), scale 1.5 → 100×50 becomes 96×48 (fit 96²), crop f = 0.5 → offset
    round(0.5·(96 − 64)) = 16 rows, no column offset; the 48 columns are padded to 64 with 128."""
    image = np.zeros((100, 50, 3), dtype=np.uint8)
    image[:, :25] = 200
    image[:, 25:] = np.arange(100, dtype=np.uint8)[:, None, None]
    replay = ReplayDraws([(0.0, 1.0, 0.2), (0.1, 2.0, 1.5), (0.0, 1.0, 0.5)])
    augmentations = ours("horizontal", draws=replay)
    aug_input = T.AugInput(image)
    transforms = T.AugmentationList(augmentations)(aug_input)
    assert replay.remaining == 0
    resize, crop = transforms.transforms[1], transforms.transforms[2]
    assert isinstance(transforms.transforms[0], T.HFlipTransform)
    assert (resize.new_h, resize.new_w) == (96, 48)
    assert (crop.x0, crop.y0, crop.w, crop.h) == (0, 16, 64, 64)
    out = aug_input.image
    assert out.shape == (64, 64, 3)
    assert (out[:, 48:] == 128).all()
    assert (out[:, 26:48] == 200).all() and (out[:, :22] != 200).all()


def test_replay_refuses_a_range_it_did_not_record_and_running_past_its_end():
    replay = ReplayDraws([(0.0, 1.0, 0.7)])
    with pytest.raises(ValueError, match=r"recorded as U\(0.0, 1.0\) but U\(0.1, 2.0\)"):
        replay.uniform(0.1, 2.0)
    assert replay.uniform(0.0, 1.0) == 0.7
    with pytest.raises(RuntimeError, match="replay exhausted: all 1 recorded draws used"):
        replay.uniform(0.0, 1.0)
