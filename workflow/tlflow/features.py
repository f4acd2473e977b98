"""Bottleneck features: extract one shard, reuse cached rows, join shards per split.

Images are decoded and preprocessed in a thread pool one batch ahead of the model,
every image is kept (the last partial batch is padded, never dropped), and computed
rows are streamed to the cache in parts and then copied into a memory-mapped
``.npy``, so memory does not grow with the shard.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import shlex
import shutil
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from . import backbones, disk, multilabel_metrics, pooling, split_rows
from . import views as view_sets
from .atomic import atomic_path
from .images import decode_all
from .manifest import LISTING_FIELDS, MANIFEST_FIELDS, manifest_text, read_listing
from .progress import Progress
from .readers import read_table
from .splits import check_classes
from .runtime import configure_threads

log = logging.getLogger(__name__)


class BadImagesError(ValueError):
    """Images that could not be decoded, listed by file."""


# Images decoded ahead of the model at most: bounds memory (34 MB at 150x150),
# and is enough to keep the decoding threads busy while TensorFlow starts.
DECODE_AHEAD = 512


def compute(paths, spec, batch_size: int, threads: int, decode=decode_all):
    """Yield (indices, features) batches for ``paths``; failures as (indices, messages).

    The features are what the spec stores (pooling.stored): each image's map, or
    its average and maximum (pooling.summarise), pooled here so that no map
    outlives its batch.

    Decoding runs in threads, batches ahead of the model. It starts before
    TensorFlow is imported and the model built, which take seconds on one core, so
    the other cores decode the first batches meanwhile.
    ``decode(paths, size)`` is images.decode_all, or a view set's (tlflow.views).
    """
    size = tuple(spec["image_size"])
    starts = range(0, len(paths), batch_size)
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:

        def submit(start):
            chunk = paths[start : start + batch_size]
            # Split each batch over the threads: Pillow releases the GIL while decoding.
            step = -(-len(chunk) // max(1, threads))
            parts = [chunk[i : i + step] for i in range(0, len(chunk), step)]
            return [(offset * step, pool.submit(decode, part, size)) for offset, part in enumerate(parts)]

        ahead = deque(submit(start) for start in starts[: max(2, DECODE_AHEAD // batch_size)])
        configure_threads(threads)
        model = backbones.build(spec)
        preprocess = backbones.preprocess_function(spec["preprocessing"])
        pooled = pooling.stored(spec) == "pooled"
        for position, start in enumerate(starts):
            parts = [(offset, future.result()) for offset, future in ahead.popleft()]
            if position + len(ahead) + 1 < len(starts):
                ahead.append(submit(starts[position + len(ahead) + 1]))
            # Each image keeps its slot in the batch (a failed one leaves zeros):
            # oneDNN's results depend on the slot in the last bits, so a resumed
            # or partly failed shard gives the same bytes as a clean run.
            slots, failed, batch = [], [], None
            for offset, (array, indices, errors) in parts:
                failed += [(start + offset + i, msg) for i, msg in errors]
                if array is not None:
                    if batch is None:
                        batch = np.zeros((batch_size, *array.shape[1:]), np.float32)
                    batch[[offset + i for i in indices]] = array
                    slots += [offset + i for i in indices]
            if slots:
                out = model.predict_on_batch(preprocess(batch))
                rows = np.asarray(out, dtype=np.float32)[slots]
                if pooled:
                    rows = pooling.summarise(rows)
                yield [start + slot for slot in slots], rows, failed
            else:
                yield [], None, failed


def _image_key(row: dict) -> str:
    return row["sha256"]


# The cache of a split: entries of rows, each a ``<digest>.npy`` and its manifest
# ``<digest>.csv`` (written last: it marks the entry whole). Each manifest row has
# the CHECKSUM of its feature row's bytes, so every row is checked before it is
# used (one bad row costs that row only) and a shard's output is checked again
# when joined: shard outputs and cache entries are hard links of the same inode,
# so damage to one is damage to both. An entry is named by the digest of its
# manifest, i.e. of its rows and their checksums: no job ever replaces another's
# entry by another one, so any shard count finds every row any other wrote.
CHECKSUM = "blake2b"
# Where a split's manifest finds each row (tlflow.split_rows), and its checksum.
SPLIT_FIELDS = ["shard", "row", CHECKSUM]


def _digest(data) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _row_checksum(vector: np.ndarray) -> str:
    return _digest(np.ascontiguousarray(vector))


def cache_folder(cache_dir, spec: dict, views: dict | None = None) -> Path:
    """The cache of one split, spec (and view set): keyed by everything that shapes
    the features, so another spec never reuses rows."""
    folder = Path(cache_dir, backbones.spec_digest(spec))
    return folder / view_sets.directory(views) if views is not None else folder


class _Unfit(ValueError):
    """Rows on disk that cannot be used, and why."""


def _reason(error: Exception) -> str:
    return str(error) if isinstance(error, _Unfit) else f"{type(error).__name__}: {error}"


def _read_entry(features: Path, manifest: Path, dtype=None) -> tuple[list[dict], np.ndarray]:
    """An entry's manifest rows and its memory-mapped features; _Unfit when they
    do not fit (the checksums are checked row by row, by the caller)."""
    rows = read_listing(manifest)
    if rows and CHECKSUM not in rows[0]:
        raise _Unfit(f"its manifest {manifest.name} has no '{CHECKSUM}' column")
    array = np.load(features, mmap_mode="r")
    if array.ndim < 1 or len(array) != len(rows) or (dtype is not None and array.dtype != dtype):
        raise _Unfit(
            f"it holds {array.shape} {array.dtype} rows for {len(rows)} manifest rows"
            + (f" of {np.dtype(dtype)}" if dtype is not None else "")
        )
    return rows, array


# Rows read from memory-mapped cache entries between releases of their pages
# (tlflow.disk.release): an extraction job's resident memory stays about this many
# rows, whatever the size of the shard and of its cache.
RELEASE_ROWS = 4096


def _stacked(vectors):
    """``vectors`` (memory-mapped rows) stacked RELEASE_ROWS at a time; the pages of
    each block's entries are released after it."""
    for start in range(0, len(vectors), RELEASE_ROWS):
        block = vectors[start : start + RELEASE_ROWS]
        yield np.stack(block)
        for mapped in {id(getattr(v, "_mmap", v)): v for v in block}.values():
            disk.release(mapped)


def _load_cache(cache_dir: Path, key, dtype, wanted: set) -> dict:
    """The ``wanted`` rows found in the cache whose checksums match, as
    {key: (row, checksum)} (memory-mapped).

    An entry that cannot be read, does not fit or holds a row that does not match
    is named in a warning and deleted: the rows of it that match are still used,
    the others recomputed.
    """
    cached = {}
    for manifest in sorted(cache_dir.glob("[!.]*.csv")):  # not the partial files
        features = manifest.with_suffix(".npy")
        try:
            rows, array = _read_entry(features, manifest, dtype)
            bad = 0
            for i, row in enumerate(rows):
                if key(row) in wanted and key(row) not in cached:
                    if _row_checksum(array[i]) == row[CHECKSUM]:
                        cached[key(row)] = array[i], row[CHECKSUM]
                    else:
                        bad += 1
                if i % RELEASE_ROWS == RELEASE_ROWS - 1:
                    disk.release(array)
            disk.release(array)
            if bad:
                raise _Unfit(f"{bad} of its rows do not match their checksums")
        except Exception as error:  # any fault of an entry costs its rows, never the job
            if not manifest.exists():
                continue  # deleted meanwhile by another job (its rows are in that job's entry)
            log.warning(
                "damaged cache entry %s (%s): deleted it, its rows are recomputed "
                "unless they match their checksums",
                features,
                _reason(error),
            )
            _remove_entry(manifest)
    return cached


def _remove_entry(manifest: Path) -> None:
    manifest.unlink(missing_ok=True)  # first: the entry is gone for every reader at once
    manifest.with_suffix(".npy").unlink(missing_ok=True)


def _store_cache(cache_dir: Path, name: str, features: Path, manifest: Path):
    """Keep this shard's rows for later runs: a hard link costs no disk.

    ``cache_dir`` is named by the spec digest; caches of other specs are useless now.
    The entry's name is its manifest's digest, as _prune_cache computes it.
    """
    for other in cache_dir.parent.glob("*"):
        if other != cache_dir:
            shutil.rmtree(other, ignore_errors=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    for source, suffix in ((features, ".npy"), (manifest, ".csv")):
        with atomic_path(cache_dir / f"{name}{suffix}") as tmp:
            try:
                os.link(source, tmp)
            except OSError:  # another file system, or links not allowed
                shutil.copyfile(source, tmp)


def _prune_cache(cache_dir: Path, manifests) -> None:
    """Delete every cache file but the entries of the split's current shards.

    Called once all of the split's shards are done (when they are joined): their
    entries hold every row the split needs now, and no job of the split still reads
    the others (parts, entries of other shard counts or of removed images, partial
    files of killed jobs). The views' cache, a folder in it, is pruned by its own join.
    """
    keep = {_digest(Path(m).read_bytes()) for m in manifests}
    for path in cache_dir.glob("*"):
        if path.is_file() and path.name.split(".")[0] not in keep:
            path.unlink(missing_ok=True)


class _PartWriter:
    """Streams computed rows into the cache in entries of ``rows_per_part``.

    Memory stays at one part whatever the shard's size, and a run killed midway
    leaves its finished parts for the next run to reuse.
    """

    def __init__(self, cache_dir: Path, fields=LISTING_FIELDS, dtype=np.float32, rows_per_part: int = 256):
        self.cache_dir, self.rows_per_part = cache_dir, rows_per_part
        self.fields, self.dtype = [*fields, CHECKSUM], dtype
        self.meta: list[dict] = []
        self.vectors: list[np.ndarray] = []
        self.written: list[Path] = []
        cache_dir.mkdir(parents=True, exist_ok=True)

    def add(self, row: dict, vector: np.ndarray) -> None:
        self.meta.append(row)
        self.vectors.append(vector)
        if len(self.meta) >= self.rows_per_part:
            self.flush()

    def flush(self) -> None:
        if not self.meta:
            return
        array = np.stack(self.vectors).astype(self.dtype, copy=False)
        meta = [{**row, CHECKSUM: _row_checksum(v)} for row, v in zip(self.meta, array)]
        text = manifest_text(meta, self.fields).encode("utf-8")
        manifest = self.cache_dir / f"{_digest(text)}.csv"
        with atomic_path(manifest.with_suffix(".npy")) as tmp:
            disk.save(tmp, array)
        with atomic_path(manifest) as tmp:  # last: marks the part whole
            tmp.write_bytes(text)
        self.written.append(manifest)
        self.meta, self.vectors = [], []

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.flush()  # also on failure: what was computed is kept


def extract_shard(
    manifest_path,
    data_dir,
    spec: dict,
    out_features,
    out_manifest,
    out_skipped,
    cache_dir,
    batch_size: int = 32,
    threads: int = 1,
    on_bad_image: str = "fail",
    views: dict | None = None,
) -> dict:
    """Features of one shard's images, in manifest order; returns counts for the log.

    With a view set (tlflow.views), the rows are those views of each image instead,
    cached apart from the originals and keyed by view too.
    """
    rows = read_listing(manifest_path)
    data_dir = Path(data_dir)
    cache_dir = cache_folder(cache_dir, spec, views)
    fields, key, decode, dtype = LISTING_FIELDS, _image_key, decode_all, np.dtype(np.float32)
    if views is not None:
        rows = view_sets.rows(views, rows)
        fields, key, decode = view_sets.VIEW_FIELDS, view_sets.key, view_sets.decoder(views)
        dtype = view_sets.dtype(views)
    cache = _load_cache(cache_dir, key, dtype, {key(row) for row in rows})
    todo = [i for i, row in enumerate(rows) if key(row) not in cache]
    log.info("backbone %s, precision %s", spec["id"], spec["precision"])
    log.info(
        "%d %s in shard, %d reused from cache, %d to compute",
        len(rows),
        "views" if views else "images",
        len(rows) - len(todo),
        len(todo),
    )
    failures: dict[int, str] = {}
    progress = Progress(len(todo), log)
    parts = _PartWriter(cache_dir, fields, dtype)
    if todo:
        paths = [data_dir / rows[i]["file"] for i in todo]
        if views is not None:  # what view_sets.decoder reads
            paths = [(path, rows[i]) for path, i in zip(paths, todo)]
        with parts:
            for good, features, failed in compute(paths, spec, batch_size, threads, decode):
                for j, vector in zip(good, features if features is not None else []):
                    parts.add(rows[todo[j]], vector)
                failures.update({todo[j]: message for j, message in failed})
                progress.update(len(good) + len(failed))
        # Read back from disk, so checked like any cached row.
        cache.update(_load_cache(cache_dir, key, dtype, {key(rows[i]) for i in todo}))
    # An image that cannot be decoded fails in each of its views: listed once.
    bad = dict.fromkeys((rows[i]["file"], message) for i, message in sorted(failures.items()))
    if failures and on_bad_image == "fail":
        listing = "\n".join(f"  {data_dir / file}: {message}" for file, message in bad)
        raise BadImagesError(
            f"{len(bad)} image(s) could not be decoded:\n{listing}\n"
            "Fix or delete these files, or set 'on_bad_image: skip' in the config to "
            "leave them out (they are then listed in the split's skipped file)."
        )
    kept = [i for i in range(len(rows)) if i not in failures]
    if not kept:
        raise BadImagesError(f"no image of shard {manifest_path} could be decoded; see the list above.")
    shape = cache[key(rows[kept[0]])][0].shape
    with atomic_path(out_features) as tmp:
        vectors = [cache[key(rows[i])][0] for i in kept]
        disk.write_rows(tmp, dtype, (len(kept), *shape), _stacked(vectors))
    text = manifest_text(
        [{**rows[i], CHECKSUM: cache[key(rows[i])][1]} for i in kept], [*fields, CHECKSUM]
    ).encode("utf-8")
    with atomic_path(out_manifest) as tmp:
        tmp.write_bytes(text)
    with atomic_path(out_skipped) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["file", "error"])
        writer.writerows(bad)
    name = _digest(text)
    _store_cache(cache_dir, name, Path(out_features), Path(out_manifest))
    # This job's parts are in its entry now (one may be that entry: same rows, same
    # name); the other entries are pruned when the split is joined (_prune_cache),
    # as other shards may still read them.
    for part in parts.written:
        if part.stem != name:
            _remove_entry(part)
    computed = len(todo) - len(failures)
    return {"rows" if views else "images": len(rows), "computed": computed, "skipped": len(bad)}


class DamagedShardError(ValueError):
    """A shard's output that cannot be read or does not match its checksums."""


def _damaged_shards(problems: list[tuple[str, str]]) -> DamagedShardError:
    """The error for shard outputs that cannot be used: (file, reason) each, and the fix."""
    listing = "\n".join(f"  shard output {features} {reason}" for features, reason in problems)
    files = " ".join(shlex.quote(str(features)) for features, _ in problems)
    return DamagedShardError(
        f"{listing}\nDamaged after it was written (its cache entry, a hard link of it, "
        f"too), or written by an earlier version without checksums. Recompute with "
        f"`snakemake --forcerun {files}` (or delete the file and rerun): its rows that "
        "still match their checksums are not computed again."
    )


def join_split(
    shards, labels, out_labels, out_manifest, out_skipped, cache_dir=None, split="", multi_label=None
) -> dict:
    """Join shard outputs into one split with its labels, rows sorted by (label, file).

    ``shards`` is a list of (features.npy, manifest.csv, skipped.csv), ``labels`` the
    split's labels listing (file, class, label): the classes are added here, so a new
    label never reruns an extraction. An image the shards hold but the listing does
    not was excluded by config 'corrections' and is left out; a listed image that no
    shard holds or skipped stops the join (the shards were made for other images).
    The rows stay in the shards' files: the split's manifest says where each one is
    (``shard``, ``row``) with its checksum (tlflow.split_rows reads them). The order
    does not depend on how many shards there are, so changing the shard count keeps
    rows. Views (a ``view`` column) stay after their image's other views, as each
    shard wrote them: an image's views are all in its shard. Every row is checked
    against its checksum here, once, so a damaged shard never reaches a head. With
    ``cache_dir`` (the split's, cache_folder), cache files no shard needs now are
    deleted. With ``multi_label`` (the label names and their separator), the labels
    are the 0/1 matrix of each row's class cell (multilabel_metrics.matrix). Returns
    counts for the log.
    """
    import pandas as pd

    manifests, unfit = [], []
    for features, manifest, _ in shards:
        try:
            rows, _ = _read_entry(Path(features), Path(manifest))
            # Read block by block: the job holds one block, not the shard.
            mismatch = next(
                (
                    row
                    for part, block in split_rows.file_rows(features).blocks()
                    for row, vector in zip(range(part.start, part.stop), block)
                    if _row_checksum(vector) != rows[row][CHECKSUM]
                ),
                None,
            )
        except Exception as error:  # whatever it is: named with the fix
            unfit.append((features, f"cannot be read ({_reason(error)})"))
            continue
        if mismatch is not None:
            unfit.append((features, f"row {mismatch} ({rows[mismatch]['file']}) does not match its checksum"))
        # The rows _read_entry read (strings, from the csv module): not read again.
        frame = pd.DataFrame(rows)  # never empty: extract_shard refuses a shard of no row
        frame["shard"], frame["row"] = str(features), range(len(frame))
        manifests.append(frame)
    if unfit:
        raise _damaged_shards(unfit)
    rows = pd.concat(manifests, ignore_index=True)
    skipped = pd.concat([read_table(s).assign(list=str(s)) for _, _, s in shards], ignore_index=True)
    listed = read_table(labels)
    listed["label"] = listed["label"].astype(np.int64)
    missing = sorted(set(listed["file"]) - set(rows["file"]) - set(skipped["file"]))
    if missing:
        raise DamagedShardError(
            f"the shards of split '{split}' hold no row of {len(missing)} image(s) its "
            f"labels listing {labels} has (first: {', '.join(missing[:5])}): they were "
            "made for other images. Recompute them with `snakemake --forcerun "
            "extract_shard` (`extract_views` for views): their rows are reused from the cache."
        )
    kept = skipped["file"].isin(listed["file"])
    check_classes(split, listed, rows["file"], skipped[kept], None if multi_label is None else multi_label[1])
    table = rows.merge(listed, on="file", validate="many_to_one").sort_values(
        ["label", "file"], kind="stable", ignore_index=True
    )
    if multi_label is None:
        matrix = table["label"].to_numpy(dtype=np.int64)
    else:
        matrix = multilabel_metrics.matrix(table["class"], *multi_label, str(labels))
    with atomic_path(out_labels) as tmp:
        disk.save(tmp, matrix)
    with atomic_path(out_manifest) as tmp:
        fields = [*MANIFEST_FIELDS, "view"] if "view" in table else MANIFEST_FIELDS
        table[[*fields, *SPLIT_FIELDS]].to_csv(tmp, index=False)
    with atomic_path(out_skipped) as tmp:
        skipped.loc[kept, ["file", "error"]].sort_values("file").to_csv(tmp, index=False)
    if cache_dir is not None:
        _prune_cache(Path(cache_dir), [manifest for _, manifest, _ in shards])
    excluded = rows.loc[~rows["file"].isin(listed["file"]), "file"].nunique()
    return {"rows": len(table), "excluded": excluded, "skipped": int(kept.sum())}
