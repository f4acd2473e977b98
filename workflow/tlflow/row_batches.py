"""Batches of stored feature rows for Keras, read as they are needed.

A ``keras.utils.PyDataset`` over rows of a split (``tlflow.split_rows.Rows``, read
from the shard files, or an in-memory array): the mlp head trains on a training
split larger than memory, one batch in memory at a time. Every row is in one batch
each epoch (the last batch is smaller, never dropped); with ``shuffle`` the order
is a permutation seeded by (seed, epoch), so a seed gives the same head.

Imports Keras when imported: only the head's job uses it.
"""

from __future__ import annotations

import keras
import numpy as np


class RowBatches(keras.utils.PyDataset):
    """(rows, labels) batches, or rows alone without ``labels`` (for predict)."""

    def __init__(self, rows, labels=None, batch_size: int = 256, seed: int = 0, shuffle: bool = False):
        super().__init__()
        self.rows, self.batch_size, self.seed, self.shuffle = rows, batch_size, seed, shuffle
        self.labels = None if labels is None else np.asarray(labels)
        self.epoch = 0
        self._order = self._permutation()

    def _permutation(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self.rows))
        return np.random.default_rng((self.seed, self.epoch)).permutation(len(self.rows))

    def __len__(self) -> int:
        return -(-len(self.rows) // self.batch_size)

    def __getitem__(self, index: int):
        positions = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        # In stored order within the batch: one read per run of rows; the batch's
        # members, not their order, are what shuffling decides.
        positions = np.sort(positions)
        rows = self.rows.take(positions, axis=0)
        return rows if self.labels is None else (rows, self.labels[positions])

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self._order = self._permutation()
