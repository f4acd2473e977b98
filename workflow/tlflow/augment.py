"""Random image transforms of the ``augmentation:`` config, on decoded images.

One affine warp does the flip, rotation, zoom and shift, so an image is resampled
once. Rotation and shift never reach outside the image: a rotated view is zoomed
in just enough that its corners stay filled with picture (no black wedges the
model could learn from). The draws come from the ``rng`` the caller passes, so a
caller that seeds it (by image and view, or by epoch) gets the same view on every
machine and every run.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

# The config keys that shape a view (the rest of the section says how many views).
TRANSFORMS = ("flip", "zoom", "rotation", "brightness", "contrast")


def transforms(section: dict) -> dict:
    """The transform settings of an ``augmentation:`` config section."""
    return {key: section[key] for key in TRANSFORMS}


def random_view(image: np.ndarray, settings: dict, rng: np.random.Generator) -> np.ndarray:
    """One random view of ``image`` (uint8, height x width x 3), same shape and dtype.

    ``settings``: ``flip`` (mirror left-right with probability 1/2), ``zoom`` (the
    view's side is a fraction in [1 - zoom, 1] of the image's), ``rotation``
    (degrees, uniform in [-rotation, rotation]), ``brightness`` and ``contrast``
    (factors uniform in [1 - amount, 1 + amount]). Every draw is made, whatever
    the amounts, so changing one amount leaves the others' draws as they were.
    """
    flip, side, angle, bright, contrast, shift_x, shift_y = (
        rng.random() < 0.5,
        1 - settings["zoom"] * rng.random(),
        settings["rotation"] * rng.uniform(-1, 1),
        1 + settings["brightness"] * rng.uniform(-1, 1),
        1 + settings["contrast"] * rng.uniform(-1, 1),
        rng.uniform(-1, 1),
        rng.uniform(-1, 1),
    )
    view = _warp(image, settings["flip"] and flip, side, angle, shift_x, shift_y)
    return _tone(view, bright, contrast)


def _warp(image, flip: bool, side: float, degrees: float, shift_x: float, shift_y: float):
    """Sample the rotated, scaled square of the image the draws describe."""
    height, width = image.shape[:2]
    theta = math.radians(degrees)
    cos, sin = abs(math.cos(theta)), abs(math.sin(theta))
    # Largest scale at which the rotated view still lies inside the image.
    scale = min(side, width / (width * cos + height * sin), height / (height * cos + width * sin))
    # Half extents of the rotated view, and the room left to shift it.
    room_x = (width - scale * (width * cos + height * sin)) / 2
    room_y = (height - scale * (height * cos + width * sin)) / 2
    centre_x, centre_y = width / 2 + shift_x * room_x, height / 2 + shift_y * room_y
    # PIL's AFFINE maps each output pixel (x, y) to an input point:
    # input = centre + scale * R(theta) * (mirrored x - w/2, y - h/2).
    c, s = math.cos(theta) * scale, math.sin(theta) * scale
    mirror = -1 if flip else 1
    coefficients = (
        c * mirror,
        -s,
        centre_x - c * mirror * width / 2 + s * height / 2,
        s * mirror,
        c,
        centre_y - s * mirror * width / 2 - c * height / 2,
    )
    warped = Image.fromarray(image).transform(
        (width, height), Image.Transform.AFFINE, coefficients, Image.Resampling.BILINEAR
    )
    return np.asarray(warped, dtype=np.float32)


def _tone(view: np.ndarray, brightness: float, contrast: float) -> np.ndarray:
    """Scale brightness, then stretch contrast about the view's mean grey."""
    view = view * brightness
    view = view.mean() + (view - view.mean()) * contrast
    return np.clip(np.rint(view), 0, 255).astype(np.uint8)
