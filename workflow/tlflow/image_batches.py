"""Batches of decoded images for training and scoring a whole model on pixels.

A ``keras.utils.PyDataset``: Keras decodes batches ahead in ``workers`` threads
(Pillow releases the GIL), every image is in one batch each epoch (the last batch
is smaller, never dropped), and an image that cannot be decoded stops the job with
its name. What an epoch draws depends only on (seed, epoch, image): the order is a
permutation seeded by (seed, epoch) and each image's augmentation by (seed, epoch,
image index), so a run resumed at epoch k sees exactly what an uninterrupted run
saw, whatever order the worker threads finish in.

Imports Keras when imported: only jobs that train or score on images use it.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from . import augment
from .images import load_rgb
from .manifest import read_manifest


class UnreadableImageError(ValueError):
    """An image listed as readable could not be decoded; the message names it."""


class ImageBatches(keras.utils.PyDataset):
    """(float32 RGB 0..255 images, int labels) batches of ``files`` below ``data_dir``.

    ``transforms`` (an ``augmentation:`` section's transforms) makes each image a
    random view; with ``shuffle`` the order changes each epoch. Set ``epoch`` before
    each epoch (callback ``EpochSetter``) when either is on.
    """

    def __init__(
        self,
        data_dir,
        files,
        labels,
        size,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = False,
        transforms: dict | None = None,
        workers: int = 1,
    ):
        super().__init__(workers=workers, use_multiprocessing=False)
        self.files = list(files)
        self.paths = [Path(data_dir, name) for name in self.files]
        self.labels = np.asarray(labels, dtype=np.int64)
        self.size, self.batch_size, self.seed = tuple(size), batch_size, seed
        self.shuffle, self.transforms = shuffle, transforms
        self.epoch = 0

    @classmethod
    def from_manifest(cls, manifest_csv, data_dir, size, batch_size: int, **options):
        """The images and labels a (kept-image) manifest lists; ``options`` as for the class."""
        rows = read_manifest(manifest_csv)
        files, labels = [r["file"] for r in rows], [r["label"] for r in rows]
        return cls(data_dir, files, labels, size, batch_size, **options)

    def __len__(self) -> int:
        return -(-len(self.paths) // self.batch_size)

    def order(self) -> np.ndarray:
        """Image indices of this epoch, in the order they are batched."""
        if not self.shuffle:
            return np.arange(len(self.paths))
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.paths))

    def __getitem__(self, batch: int):
        indices = self.order()[batch * self.batch_size : (batch + 1) * self.batch_size]
        return np.stack([self.image(int(i)) for i in indices]), self.labels[indices]

    def image(self, index: int) -> np.ndarray:
        path = self.paths[index]
        try:
            pixels = load_rgb(path, self.size)
        except Exception as error:  # Pillow raises many types for broken files
            raise UnreadableImageError(
                f"{path} could not be decoded ({type(error).__name__}: {error}), though it "
                "was read when its features were extracted: it changed since. Run "
                "snakemake again: the image is hashed anew and its shard re-extracted, "
                "and 'on_bad_image' then fails or skips it."
            ) from None
        if self.transforms:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            pixels = augment.random_view(pixels, self.transforms, rng)
        return pixels.astype(np.float32)


class EpochSetter(keras.callbacks.Callback):
    """Tells datasets which epoch starts, before Keras fetches its first batch."""

    def __init__(self, *datasets: ImageBatches):
        super().__init__()
        self.datasets = datasets

    def on_epoch_begin(self, epoch, logs=None):
        for dataset in self.datasets:
            dataset.epoch = epoch
