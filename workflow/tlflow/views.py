"""Views of an image besides the original, cached like it: augmented and test-time views.

A *view set* is a plain dict, the ``views`` parameter of a view job:
``{"family": ..., "names": [...]}``.

- Augmented views of the training split: family ``{"transforms": ..., "seed": s,
  "dtype": ...}``, names ``"0"`` .. ``"K-1"``. View v of an image is ``augment.random_view`` with a
  generator seeded by (seed, v, the image's content hash): the same on every
  machine, in every shard and on every rerun. The amounts only scale the draws,
  so changing one amount changes that transform alone.
- Test-time views of the evaluation split: family ``{"test_time": "fixed"}``,
  names from ``TEST_TIME`` (``"flip"``: the mirror image), which ``tlflow.deploy``
  builds into ``model.keras`` from the same definition.

A view's features are cached by (content hash, view name) in a folder of the
split's feature cache named by the family's digest. Adding views computes the new
ones only; changing an amount recomputes the views, never the originals.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from .augment import random_view, transforms
from .images import decode_all

VIEW_FIELDS = ["file", "sha256", "view"]  # of a shard's view rows: no class


# The test-time views, by config name: each a fixed order of the positions along
# AXIS of an image (height, width, channels), given the axis' length. The features'
# views (test_time_view) and model.keras's layers (tlflow.deploy) are made from it.
AXIS = 1  # the columns
TEST_TIME = {"flip": lambda length: np.arange(length)[::-1]}  # the mirror image


def test_time_view(name: str, image: np.ndarray) -> np.ndarray:
    """The test-time view ``name`` of ``image`` (height, width, channels), a new array."""
    return np.take(image, TEST_TIME[name](image.shape[AXIS]), axis=AXIS)


def training_views(section: dict) -> dict | None:
    """The view set of the training split from ``augmentation:``; None for ``views: 0``."""
    if not section["views"]:
        return None
    family = {"transforms": transforms(section), "seed": section["seed"], "dtype": section["dtype"]}
    return {"family": family, "names": [str(v) for v in range(section["views"])]}


def test_time_views(section: dict) -> dict | None:
    """The view set of the evaluation split from ``augmentation:``; None when off."""
    names = section["test_time"]
    return {"family": {"test_time": "fixed"}, "names": list(names)} if names else None


def directory(views: dict) -> str:
    """Cache folder of a view set: named by its family, not its names, so more
    views of the same family find the ones already computed."""
    blob = json.dumps(views["family"], sort_keys=True).encode()
    return f"views/{hashlib.sha256(blob).hexdigest()[:16]}"


def dtype(views: dict) -> np.dtype:
    """How a view set's features are stored: test-time views stay float32, as
    model.keras computes them."""
    return np.dtype(views["family"].get("dtype", "float32"))


def key(row: dict) -> tuple[str, str]:
    """Cache key of a view row: the image's content and the view's name."""
    return row["sha256"], row["view"]


def rows(views: dict, images: list[dict]) -> list[dict]:
    """One row per view of each image, the views of an image together and in order."""
    return [{**row, "view": name} for row in images for name in views["names"]]


def view(views: dict, image: np.ndarray, row: dict) -> np.ndarray:
    """The view ``row["view"]`` of ``image`` (uint8, decoded at the backbone's size)."""
    family = views["family"]
    if "test_time" in family:
        return test_time_view(row["view"], image)
    seed = [family["seed"], int(row["view"]), int(row["sha256"], 16)]
    return random_view(image, family["transforms"], np.random.default_rng(seed))


def decoder(views: dict):
    """``decode(items, size)`` like images.decode_all, for items (path, view row)."""

    def decode(items, size):
        array, good, errors = decode_all([path for path, _ in items], size)
        if array is not None:
            array = np.stack([view(views, array[j], items[i][1]) for j, i in enumerate(good)])
        return array, good, errors

    return decode
