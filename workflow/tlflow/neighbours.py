"""Each image's most similar others by cosine similarity of its features: the
near-duplicate search of the audit.

Two searches give the same table. The exact one meets blocks of rows with blocks of
columns, so memory is one block x block matrix, but time grows with the square of
the image count (4 s at 20,000 images of 1,280 numbers, hours at a million). The
approximate one asks a faiss inverted-file index (k-means cells; each image is
compared with the images of the few cells nearest to it) over the images'
principal coordinates for twice as many candidates as it lists, then computes
the similarity of every candidate exactly, so a pair it lists has the value the
exact search gives. benchmarks/near_duplicates.py measures its recall.
"""

from __future__ import annotations

import logging
import math

import numpy as np

log = logging.getLogger(__name__)

SEARCHES = ("auto", "exact", "approximate")
# `auto` searches exactly up to this many images: seconds there, and every pair.
EXACT_UP_TO = 20_000
# The index works on each row's projection onto the REDUCED principal directions
# of a sample: a near copy is near in every direction, so in these too, and the
# search costs a tenth of one in all 1,280. Cells per square root of the image
# count, cells searched per image, training images per cell and k-means rounds:
# faiss's guidelines (4 to 16 x sqrt(n) cells, at least 39 images per cell to
# train), at their cheap end. CANDIDATES per listed neighbour are proposed and
# ranked by their exact similarity. benchmarks/near_duplicates.py measured these.
REDUCED = 128
CELLS_PER_ROOT = 4
PROBES = 8
TRAINING_PER_CELL = 40
TRAINING_ROUNDS = 10
CANDIDATES = 2
# Squared distances are float32 sums: a pair at the cut-off may come out this much long.
ROUNDING = 1e-4
BLOCK = 2048


def unit_rows(features, in_place: bool = False) -> np.ndarray:
    """``features`` scaled to length 1 (an all-zero row stays zero); ``in_place``
    scales a float array block by block instead of copying it."""
    if not in_place:
        norms = np.linalg.norm(features, axis=1, keepdims=True)
        return features / np.where(norms == 0, 1, norms)
    for a in range(0, len(features), BLOCK):
        features[a : a + BLOCK] = unit_rows(features[a : a + BLOCK])
    return features


def exact_neighbours(unit, k: int, cutoff: float, block: int = BLOCK):
    """(similarity, column) of each row's k most similar other rows at or above
    ``cutoff`` (-inf and -1 where fewer reach it), every pair compared."""
    n = len(unit)
    best_s = np.full((n, k), -np.inf, np.float32)
    best_j = np.full((n, k), -1)
    for a in range(0, n, block):
        rows_s, rows_j = best_s[a : a + block], best_j[a : a + block]  # views: updated in place
        for b in range(0, n, block):
            similarity = unit[a : a + block] @ unit[b : b + block].T
            if a == b:
                np.fill_diagonal(similarity, -np.inf)  # an image is not its own copy
            hit = np.flatnonzero((similarity >= cutoff).any(axis=1))  # most rows: none
            if not hit.size:
                continue
            columns = np.broadcast_to(np.arange(b, b + similarity.shape[1]), (len(hit), similarity.shape[1]))
            all_s = np.concatenate([rows_s[hit], similarity[hit]], axis=1)
            all_j = np.concatenate([rows_j[hit], columns], axis=1)
            top = np.argpartition(-all_s, k - 1, axis=1)[:, :k]
            rows_s[hit], rows_j[hit] = np.take_along_axis(all_s, top, 1), np.take_along_axis(all_j, top, 1)
    return best_s, best_j


# Rows of the sample the principal directions are taken from: plenty for 128 of
# them, and a float32 copy of at most 100 MB at 1,280 numbers a row.
DIRECTIONS_SAMPLE = 20_000


def principal_directions(sample, count: int):
    """(dims, count) float32: the ``count`` principal directions of ``sample``'s rows
    (None where the rows have no more numbers than that)."""
    if sample.shape[1] <= count:
        return None
    centred = sample - sample.mean(axis=0, dtype=np.float64).astype(np.float32)
    _, vectors = np.linalg.eigh(centred.T @ centred)  # ascending eigenvalues
    return np.ascontiguousarray(vectors[:, ::-1][:, :count], dtype=np.float32)


def approximate_neighbours(unit, k: int, seed: int = 0, threads: int = 1, cutoff: float | None = None):
    """(similarity, column) of each row's k most similar other rows as a faiss
    inverted-file index finds them (-inf and -1 where it finds fewer, or fewer at
    or above ``cutoff``); the similarities are computed exactly from ``unit``.

    The index holds each row's REDUCED principal coordinates (a tenth of the
    features' memory) and only proposes candidates. The directions and the cells
    are trained on a sample drawn with ``seed``; each image's search is one
    thread's work, so the result does not depend on ``threads``.
    """
    import faiss

    faiss.omp_set_num_threads(threads)
    n, dims = unit.shape
    cells = max(1, min(n // TRAINING_PER_CELL, round(CELLS_PER_ROOT * math.sqrt(n))))
    sample = np.sort(np.random.default_rng(seed).choice(n, min(n, TRAINING_PER_CELL * cells), replace=False))
    spread = sample[:: max(1, len(sample) // DIRECTIONS_SAMPLE)]  # over every split
    directions = principal_directions(np.asarray(unit[spread], dtype=np.float32), REDUCED)

    def reduced(rows):
        rows = np.asarray(rows, dtype=np.float32)
        return np.ascontiguousarray(rows if directions is None else rows @ directions)

    width = dims if directions is None else REDUCED
    index = faiss.IndexIVFFlat(faiss.IndexFlatL2(width), width, cells, faiss.METRIC_L2)
    index.cp.seed, index.cp.niter = seed, TRAINING_ROUNDS
    index.cp.min_points_per_centroid = 1  # a small sample is enough here: no warning
    index.train(np.concatenate([reduced(unit[sample[a : a + BLOCK]]) for a in range(0, len(sample), BLOCK)]))
    points = np.empty((n, width), np.float32)
    for a in range(0, n, BLOCK):
        points[a : a + BLOCK] = reduced(unit[a : a + BLOCK])
        index.add(points[a : a + BLOCK])
    index.nprobe = min(PROBES, cells)
    proposed = min(n, CANDIDATES * k + 1)  # the image itself is usually one of them
    best_s = np.full((n, k), -np.inf, np.float32)
    best_j = np.full((n, k), -1)
    for a in range(0, n, BLOCK):
        rows = np.asarray(unit[a : a + BLOCK], dtype=np.float32)
        distance, found = index.search(points[a : a + len(rows)], proposed)
        found = np.where(found == np.arange(a, a + len(rows))[:, None], -1, found)
        if cutoff is not None:
            # A projection on orthonormal directions is never longer than the vector,
            # so a pair farther apart there than the cut-off allows is farther here
            # (unit rows: squared distance = 2 - 2 x similarity): not worth computing.
            found = np.where(distance <= 2 * (1 - cutoff) + ROUNDING, found, -1)
        similarity = np.full(found.shape, -np.inf, np.float32)
        row, column = np.nonzero(found >= 0)
        similarity[row, column] = np.einsum("ij,ij->i", rows[row], unit[found[row, column]])
        # The k most similar, ties in the index's order.
        top = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
        best_s[a : a + len(rows)] = np.take_along_axis(similarity, top, 1)
        best_j[a : a + len(rows)] = np.where(
            np.isfinite(best_s[a : a + len(rows)]), np.take_along_axis(found, top, 1), -1
        )
    return best_s, best_j


def resolve(search: str, n: int) -> str:
    """`exact` or `approximate` for ``search`` of SEARCHES at ``n`` images."""
    if search not in SEARCHES:
        raise ValueError(f"near-duplicate search '{search}': use one of {', '.join(SEARCHES)}")
    if search == "auto":
        return "exact" if n <= EXACT_UP_TO else "approximate"
    return search


def similar_pairs(
    features,
    cutoff: float,
    neighbours: int,
    search: str = "auto",
    seed: int = 0,
    threads: int = 1,
    block: int = BLOCK,
    *,
    normalised: bool = False,
):
    """(i, j, cosine similarity), i < j, of each image's ``neighbours`` most similar
    other images at or above ``cutoff``, by the ``search`` of SEARCHES.

    Bounding the pairs per image keeps the list linear in the image count even where
    the features cannot tell most images apart (a low cut-off, an untrained
    backbone). ``normalised``: the rows are unit rows already (no copy is made).
    """
    unit = np.asarray(features, dtype=np.float32)
    unit = unit if normalised else unit_rows(unit)
    n, k = len(unit), min(neighbours, len(unit) - 1)
    if k < 1:
        return np.array([], int), np.array([], int), np.array([], np.float32)
    method = resolve(search, n)
    log.info("near duplicates: %s search of %d images", method, n)
    if method == "exact":
        best_s, best_j = exact_neighbours(unit, k, cutoff, block)
    else:
        best_s, best_j = approximate_neighbours(unit, k, seed, threads, cutoff)
    keep = best_s >= cutoff
    i = np.broadcast_to(np.arange(n)[:, None], keep.shape)[keep]
    i, j, similarity = np.minimum(i, best_j[keep]), np.maximum(i, best_j[keep]), best_s[keep]
    _, first = np.unique(i * n + j, return_index=True)  # a pair found from both sides
    return i[first], j[first], similarity[first]
