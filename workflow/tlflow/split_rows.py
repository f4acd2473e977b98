"""A split's feature rows, read where they are stored: in its shards' files.

The join writes no second copy of the rows. The split's manifest is the index:
for each row, in the split's order, the shard file that holds it (``shard``), its
position there (``row``) and its checksum (``blake2b``). The checksums also make the
manifest change whenever a row's bytes do, so everything that reads the split
reruns then, even when the same files hold the rows.
"""

from __future__ import annotations

import numpy as np

from .readers import load_array, read_table


def gather(manifest_csv, shard_files) -> np.ndarray:
    """The rows of a split in its manifest's order, as one in-memory array.

    ``shard_files`` are the shard ``.npy`` files the split's manifest names (the
    rule's inputs); a row in any other file is refused, so a job never reads a file
    Snakemake did not hand it.
    """
    table = read_table(manifest_csv, usecols=["shard", "row"])
    arrays = {str(path): load_array(path) for path in shard_files}
    unknown = sorted(set(table["shard"]) - set(arrays))
    if unknown:
        raise ValueError(
            f"{manifest_csv} names shard files that are not this job's inputs: "
            f"{', '.join(unknown[:5])}. The split was joined for another shard count or "
            f"another working directory: delete {manifest_csv} and rerun."
        )
    if not len(table):
        return np.empty((0,), np.float32)
    first = next(iter(arrays.values()))
    out = np.empty((len(table), *first.shape[1:]), first.dtype)
    for shard, group in table.groupby("shard", sort=False):
        # Rows of one shard come in its own order: a forward read of its file.
        out[group.index.to_numpy()] = arrays[shard][group["row"].to_numpy()]
    return out
