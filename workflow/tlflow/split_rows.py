"""A split's feature rows, read where they are stored: in its shards' files.

The join writes no second copy of the rows. The split's manifest is the index:
for each row, in the split's order, the shard file that holds it (``shard``), its
position there (``row``) and its checksum (``blake2b``). The checksums also make the
manifest change whenever a row's bytes do, so everything that reads the split
reruns then, even when the same files hold the rows.

Rows are read with positioned reads (``os.preadv``) into arrays of the caller's,
not through memory maps: a job's resident memory is then what it holds, never the
pages of every shard it has touched, so its peak can be measured and requested.
"""

from __future__ import annotations

import os

import numpy as np

from .readers import damaged, load_array, read_table

# Rows per block when a split is read whole or pooled: about 64 MB at a time.
BLOCK_BYTES = 2**26


class _Shards:
    """Open shard files of one row shape: their descriptors, data offsets and dtypes.

    Their rows are read as ``dtype``, the widest of theirs: float16 views of the
    training images come as float32 beside their float32 originals.
    """

    def __init__(self):
        self.paths, self.fds, self.offsets, self.dtypes, self.shape = [], [], [], [], None

    @property
    def dtype(self) -> np.dtype:
        return np.result_type(*self.dtypes) if self.dtypes else np.dtype(np.float32)

    def add(self, path) -> int:
        """Check ``path``'s header against the other shards'; its number among them."""
        array = load_array(path)  # a memory map: reads and checks the header only
        shape, dtype = array.shape[1:], array.dtype
        if self.shape is None:
            self.shape = shape
        elif shape != self.shape:
            raise damaged(path, ValueError(f"its rows are {shape}, the other shards' {self.shape}"))
        self.offsets.append(array.offset if isinstance(array, np.memmap) else 0)
        del array
        self.paths.append(str(path))
        self.dtypes.append(dtype)
        self.fds.append(os.open(path, os.O_RDONLY))
        return len(self.paths) - 1

    def __del__(self):
        for fd in self.fds:
            os.close(fd)


class Rows:
    """The rows of one or more splits (or their views) in their manifests' order,
    read on demand.

    ``sources`` are (manifest.csv, shard files) pairs, concatenated in order;
    ``shard_files`` are the shard ``.npy`` files each manifest names (the rule's
    inputs): a row in any other file is refused, so a job never reads a file
    Snakemake did not hand it.
    """

    def __init__(self, sources):
        self._shards, file_of, row_of = _Shards(), [], []
        for manifest_csv, shard_files in sources:
            table = read_table(manifest_csv, usecols=["shard", "row"])
            known = {str(path): self._shards.add(path) for path in shard_files}
            unknown = sorted(set(table["shard"]) - set(known))
            if unknown:
                raise ValueError(
                    f"{manifest_csv} names shard files that are not this job's inputs: "
                    f"{', '.join(unknown[:5])}. The split was joined for another shard count or "
                    f"another working directory: delete {manifest_csv} and rerun."
                )
            file_of.append(table["shard"].map(known).to_numpy(np.int64))
            row_of.append(table["row"].to_numpy(np.int64))
        self._file = np.concatenate(file_of) if file_of else np.empty(0, np.int64)
        self._row = np.concatenate(row_of) if row_of else np.empty(0, np.int64)
        if self._shards.shape is None:  # no shard at all: an empty split
            self._shards.shape = (2, 0)

    @property
    def shape(self) -> tuple:
        """(rows, *a row's shape), as an array's."""
        return (len(self), *self._shards.shape)

    @property
    def dtype(self) -> np.dtype:
        return self._shards.dtype

    def __len__(self) -> int:
        return len(self._row)

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self._shards.shape, dtype=np.int64)) * self.dtype.itemsize

    def __getitem__(self, key):
        """The rows of a slice, read now (``rows[a:b]``, ``rows[a:b, 0]``), as an array's."""
        first, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        if not isinstance(first, slice):
            raise TypeError("Rows are indexed by a slice; take() or subset() select positions")
        block = self.take(np.arange(len(self))[first])
        return block[(slice(None), *rest)] if rest else block

    def subset(self, positions) -> Rows:
        """The rows at ``positions`` (of this Rows), in that order, still unread."""
        positions = np.asarray(positions, np.int64)
        subset = Rows([])
        subset._shards, subset._file, subset._row = self._shards, self._file[positions], self._row[positions]
        return subset

    def take(self, positions, axis: int = 0) -> np.ndarray:
        """The rows at ``positions``, in that order, as one new array (as
        ``ndarray.take`` along ``axis`` 0, the only axis of rows).

        They are read file by file in stored order, each run of consecutive rows with
        one read, and put in the asked order after.
        """
        if axis != 0:
            raise ValueError("rows are taken along axis 0")
        positions = np.asarray(positions, np.int64)
        files, rows = self._file[positions], self._row[positions]
        order = np.lexsort((rows, files))
        files, rows = files[order], rows[order]
        out = np.empty((len(positions), *self._shards.shape), self.dtype)
        breaks = np.flatnonzero((np.diff(files) != 0) | (np.diff(rows) != 1)) + 1
        for start, end in zip(np.r_[0, breaks], np.r_[breaks, len(out)]):
            if start < end:
                self._read(files[start], rows[start], out[start:end])
        if np.any(order != np.arange(len(order))):
            placed = np.empty_like(out)
            placed[order] = out
            return placed
        return out

    def _read(self, file: int, row: int, into: np.ndarray) -> None:
        """Rows ``row`` onwards of shard ``file`` into ``into`` (C-contiguous rows)."""
        shards = self._shards
        stored = shards.dtypes[file]
        target = into if stored == into.dtype else np.empty(into.shape, stored)
        row_bytes = target[0].nbytes if len(target) else 0
        view, offset = memoryview(target.reshape(-1).view(np.uint8)), shards.offsets[file] + row * row_bytes
        while len(view):
            done = os.preadv(shards.fds[file], [view], int(offset))
            if done == 0:
                raise damaged(shards.paths[file], EOFError(f"it ends before row {row + len(into)}"))
            view, offset = view[done:], offset + done
        if target is not into:
            into[...] = target

    def blocks(self, block_rows: int | None = None):
        """(slice, rows) blocks of about BLOCK_BYTES, in order."""
        step = block_rows or max(1, BLOCK_BYTES // max(1, self.row_bytes))
        for start in range(0, len(self), step):
            part = slice(start, min(start + step, len(self)))
            yield part, self.take(np.arange(part.start, part.stop))

    def read(self) -> np.ndarray:
        """Every row, as one in-memory array."""
        out = np.empty(self.shape, self.dtype)
        for part, block in self.blocks():
            out[part] = block
        return out

    def pooled_width(self, how: str, storage: str) -> int:
        """Numbers in one vector of pooling ``how``."""
        from .pooling import pool

        return pool(np.zeros((1, *self.shape[1:]), self.dtype), how, storage).shape[1]

    def pooled(self, how: str, storage: str, out=None) -> np.ndarray:
        """(n, d) float32 vectors of pooling ``how``, pooled block by block into
        ``out`` where given: the job holds the pooled matrix, not the stored rows."""
        from .pooling import pool

        if out is None:
            out = np.empty((len(self), self.pooled_width(how, storage)), np.float32)
        for part, block in self.blocks():
            out[part] = pool(block, how, storage)
        return out


def file_rows(path) -> Rows:
    """Every row of one ``.npy`` file, in stored order (a shard before it is joined)."""
    rows = Rows([])
    rows._shards = _Shards()
    number = rows._shards.add(path)
    count = load_array(path).shape[0]
    rows._file, rows._row = np.full(count, number, np.int64), np.arange(count, dtype=np.int64)
    return rows


def joined_split(shards, labels_npy, manifest_csv, expected=None):
    """A joined split as its readers take it: (its Rows, labels, manifest table),
    checked to describe the same rows, so a split whose files were not written
    together never reaches a head, a score or the audit.

    ``expected(table)`` gives the labels the manifest says (default: its ``label``
    column; a 0/1 matrix for multi-label data).
    """
    features = Rows([(manifest_csv, shards)])
    labels = load_array(labels_npy, mmap=False)
    table = read_table(manifest_csv)
    if not len(features) == len(labels) == len(table):
        raise ValueError(
            f"the split's shards hold {len(features)} rows, {labels_npy} {len(labels)} and "
            f"{manifest_csv} {len(table)}: they were not written together. Delete "
            "them and rerun the workflow to rebuild the split."
        )
    if not np.array_equal(labels, table["label"].to_numpy() if expected is None else expected(table)):
        raise ValueError(
            f"labels in {labels_npy} differ from those in {manifest_csv}; delete both "
            "and rerun the workflow to rebuild the split."
        )
    return features, labels, table
