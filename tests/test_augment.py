"""Random views of an image: deterministic by seed, inside the picture, within the amounts."""

import numpy as np
import pytest

from tlflow.augment import TRANSFORMS, random_view, transforms

NONE = {"flip": False, "zoom": 0, "rotation": 0, "brightness": 0, "contrast": 0}
DEFAULT = {"flip": True, "zoom": 0.2, "rotation": 10, "brightness": 0.2, "contrast": 0.2}


@pytest.fixture
def image():
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)  # not square on purpose


def view(image, settings, seed):
    return random_view(image, settings, np.random.default_rng(seed))


def test_the_same_seed_gives_the_same_view_and_other_seeds_other_views(image):
    first = view(image, DEFAULT, 7)
    assert first.shape == image.shape and first.dtype == np.uint8
    np.testing.assert_array_equal(first, view(image, DEFAULT, 7))
    others = [view(image, DEFAULT, seed) for seed in range(8, 12)]
    assert all(not np.array_equal(first, other) for other in others)
    assert not np.array_equal(first, image)


def test_no_amounts_give_the_image_itself(image):
    for seed in range(5):
        np.testing.assert_array_equal(view(image, NONE, seed), image)


def test_flip_alone_mirrors_the_image_about_half_the_time(image):
    views = [view(image, {**NONE, "flip": True}, seed) for seed in range(20)]
    mirrored = [np.array_equal(v, image[:, ::-1]) for v in views]
    kept = [np.array_equal(v, image) for v in views]
    assert all(m or k for m, k in zip(mirrored, kept))
    assert 3 <= sum(mirrored) <= 17


@pytest.mark.parametrize("settings", [{**NONE, "rotation": 45}, {**DEFAULT, "rotation": 45, "zoom": 0.5}])
def test_rotated_and_shifted_views_stay_inside_the_picture(settings):
    white = np.full((20, 40, 3), 255, np.uint8)  # anything sampled outside would be black
    for seed in range(20):
        geometry = {**settings, "brightness": 0, "contrast": 0}
        assert view(white, geometry, seed).min() >= 250


def test_brightness_and_contrast_stay_within_their_amounts():
    grey = np.full((16, 16, 3), 100, np.uint8)
    means = [view(grey, {**NONE, "brightness": 0.2}, seed).mean() for seed in range(30)]
    assert 80 - 1 <= min(means) < 95 and 105 < max(means) <= 120 + 1
    ramp = np.tile(np.linspace(50, 150, 16, dtype=np.uint8)[None, :, None], (16, 1, 3))
    spreads = [np.ptp(view(ramp, {**NONE, "contrast": 0.5}, s).astype(int)) for s in range(30)]
    assert 50 - 2 <= min(spreads) < 90 and 110 < max(spreads) <= 150 + 2


def test_one_amount_changed_keeps_the_other_draws(image):
    # Geometry only, then the same draws with a brightness amount: the same warp.
    plain = view(image, {**DEFAULT, "brightness": 0, "contrast": 0}, 3).astype(float)
    brighter = view(image, {**DEFAULT, "brightness": 0.5, "contrast": 0}, 3).astype(float)
    ratio = brighter[plain > 20] / plain[plain > 20]
    unclipped = ratio[brighter[plain > 20] < 255]
    assert np.ptp(unclipped) < 0.1  # one factor for every pixel: the warp is unchanged


def test_transforms_takes_the_transform_keys_of_the_section():
    section = {**DEFAULT, "views": 4, "seed": 0}
    assert transforms(section) == DEFAULT and tuple(DEFAULT) == TRANSFORMS
