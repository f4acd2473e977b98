"""Bottleneck features: extract one shard, reuse cached rows, join shards per split.

Images are decoded and preprocessed in a thread pool one batch ahead of the model,
every image is kept (the last partial batch is padded, never dropped), and computed
rows are streamed to the cache in parts and then copied into a memory-mapped
``.npy``, so memory does not grow with the shard.
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from . import backbones
from . import views as view_sets
from .atomic import atomic_path
from .images import decode_all
from .manifest import MANIFEST_FIELDS, manifest_text, read_manifest
from .progress import Progress
from .readers import read_table
from .runtime import configure_threads

log = logging.getLogger(__name__)


class BadImagesError(ValueError):
    """Images that could not be decoded, listed by file."""


# Images decoded ahead of the model at most: bounds memory (34 MB at 150x150),
# and is enough to keep the decoding threads busy while TensorFlow starts.
DECODE_AHEAD = 512


def compute(paths, spec, batch_size: int, threads: int, decode=decode_all):
    """Yield (indices, features) batches for ``paths``; failures as (indices, messages).

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
            return [
                (offset * step, pool.submit(decode, part, size))
                for offset, part in enumerate(parts)
            ]

        ahead = deque(submit(start) for start in starts[: max(2, DECODE_AHEAD // batch_size)])
        configure_threads(threads)
        model = backbones.build(spec)
        preprocess = backbones.preprocess_function(spec["preprocessing"])
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
                yield [start + slot for slot in slots], rows, failed
            else:
                yield [], None, failed


def _image_key(row: dict) -> str:
    return row["sha256"]


def _load_cache(cache_dir: Path, key=_image_key):
    """Rows cached by any shard of the split, as {key(row): row} (memory-mapped).

    Looking across the split's shards means a file that moved shard (or a new shard
    count) still finds its features.
    """
    cached = {}
    for manifest in sorted(cache_dir.glob("*.csv")):
        features = manifest.with_suffix(".npy")
        if features.exists():
            rows = np.load(features, mmap_mode="r")
            cached.update(
                (key(row), rows[i]) for i, row in enumerate(read_manifest(manifest))
            )
    return cached


def _store_cache(cache_dir: Path, name: str, features: Path, manifest: Path):
    """Keep this shard's rows for later runs: a hard link costs no disk.

    ``cache_dir`` is named by the spec digest; caches of other specs are useless now.
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
    for part in cache_dir.glob(f"{name}.part*"):  # the whole shard is stored now
        part.unlink()


class _PartWriter:
    """Streams computed rows into the cache in parts of ``rows_per_part``.

    Memory stays at one part whatever the shard's size, and a run killed midway
    leaves its finished parts for the next run to reuse.
    """

    def __init__(self, cache_dir: Path, name: str, fields=MANIFEST_FIELDS, dtype=np.float32,
                 rows_per_part: int = 256):  # fmt: skip
        self.cache_dir, self.name, self.rows_per_part = cache_dir, name, rows_per_part
        self.fields, self.dtype = fields, dtype
        self.meta: list[dict] = []
        self.vectors: list[np.ndarray] = []
        cache_dir.mkdir(parents=True, exist_ok=True)
        self.number = len(list(cache_dir.glob(f"{name}.part*.csv")))

    def add(self, row: dict, vector: np.ndarray) -> None:
        self.meta.append(row)
        self.vectors.append(vector)
        if len(self.meta) >= self.rows_per_part:
            self.flush()

    def flush(self) -> None:
        if not self.meta:
            return
        stem = f"{self.name}.part{self.number:05d}"
        with atomic_path(self.cache_dir / f"{stem}.npy") as tmp:
            np.save(tmp, np.stack(self.vectors).astype(self.dtype, copy=False))
        with atomic_path(self.cache_dir / f"{stem}.csv") as tmp:  # last: marks the part whole
            tmp.write_text(manifest_text(self.meta, self.fields))
        self.number += 1
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
    rows = read_manifest(manifest_path)
    data_dir = Path(data_dir)
    # Keyed by everything that shapes the features: another spec never reuses rows.
    cache_dir = Path(cache_dir, backbones.spec_digest(spec))
    fields, key, decode, dtype = MANIFEST_FIELDS, _image_key, decode_all, np.dtype(np.float32)
    if views is not None:
        rows = view_sets.rows(views, rows)
        cache_dir = cache_dir / view_sets.directory(views)
        fields, key, decode = view_sets.VIEW_FIELDS, view_sets.key, view_sets.decoder(views)
        dtype = view_sets.dtype(views)
    cache = _load_cache(cache_dir, key)
    todo = [i for i, row in enumerate(rows) if key(row) not in cache]
    log.info("backbone %s, precision %s", spec["id"], spec["precision"])
    log.info(
        "%d %s in shard, %d reused from cache, %d to compute",
        len(rows), "views" if views else "images", len(rows) - len(todo), len(todo),
    )  # fmt: skip
    failures: dict[int, str] = {}
    progress = Progress(len(todo), log)
    name = Path(out_features).stem
    if todo:
        paths = [data_dir / rows[i]["file"] for i in todo]
        if views is not None:  # what view_sets.decoder reads
            paths = [(path, rows[i]) for path, i in zip(paths, todo)]
        with _PartWriter(cache_dir, name, fields, dtype) as parts:
            for good, features, failed in compute(paths, spec, batch_size, threads, decode):
                for j, vector in zip(good, features if features is not None else []):
                    parts.add(rows[todo[j]], vector)
                failures.update({todo[j]: message for j, message in failed})
                progress.update(len(good) + len(failed))
        cache = _load_cache(cache_dir, key)  # now holds every computed row, on disk
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
        raise BadImagesError(
            f"no image of shard {manifest_path} could be decoded; see the list above."
        )
    shape = cache[key(rows[kept[0]])].shape
    with atomic_path(out_features) as tmp:
        out = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=dtype, shape=(len(kept), *shape)
        )
        for position, i in enumerate(kept):
            out[position] = cache[key(rows[i])]
        out.flush()
        del out
    with atomic_path(out_manifest) as tmp:
        tmp.write_text(manifest_text([rows[i] for i in kept], fields))
    with atomic_path(out_skipped) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["file", "error"])
        writer.writerows(bad)
    _store_cache(cache_dir, name, Path(out_features), Path(out_manifest))
    computed = len(todo) - len(failures)
    return {"rows" if views else "images": len(rows), "computed": computed, "skipped": len(bad)}


def join_shards(shards, out_features, out_labels, out_manifest, out_skipped) -> int:
    """Join shard outputs into one split, rows sorted by (class label, file).

    ``shards`` is a list of (features.npy, manifest.csv, skipped.csv). The order does
    not depend on how many shards there are, so changing the shard count keeps rows.
    Views (a ``view`` column) stay after their image's other views, as each shard
    wrote them: an image's views are all in its shard.
    """
    import pandas as pd

    parts, manifests = [], []
    for number, (features, manifest, _) in enumerate(shards):
        frame = read_table(manifest)
        frame["shard"], frame["row"] = number, range(len(frame))
        manifests.append(frame)
        parts.append(np.load(features, mmap_mode="r"))
    table = pd.concat(manifests, ignore_index=True).sort_values(
        ["label", "file"], kind="stable", ignore_index=True
    )
    shape = parts[0].shape[1:]
    with atomic_path(out_features) as tmp:
        out = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=parts[0].dtype, shape=(len(table), *shape)
        )
        for position, (shard, row) in enumerate(zip(table["shard"], table["row"])):
            out[position] = parts[shard][row]
        out.flush()
        del out
    with atomic_path(out_labels) as tmp:
        np.save(tmp, table["label"].to_numpy(dtype=np.int64))
    with atomic_path(out_manifest) as tmp:
        fields = view_sets.VIEW_FIELDS if "view" in table else MANIFEST_FIELDS
        table[fields].to_csv(tmp, index=False)
    skipped = pd.concat([read_table(s) for _, _, s in shards])
    with atomic_path(out_skipped) as tmp:
        skipped.sort_values("file").to_csv(tmp, index=False)
    return len(table)
