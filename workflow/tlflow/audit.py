"""Data audit from the cached features: suspected label errors, duplicates and leaks
across splits, and a 2-D map of the images. No extraction and no Keras.

Every image is one pooled feature vector (the spatial map averaged, as stored or
from the stored map). Label errors
come from confident learning (Northcutt et al., 2021): out-of-fold probabilities of
a cross-validated linear probe, calibrated by one temperature, and per-class
thresholds. Near-duplicates are pairs
whose cosine similarity reaches a cut-off, each image's most similar ones
(tlflow.neighbours: exactly, or from an approximate index at scale).
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd

from . import blas, split_rows
from .atomic import atomic_path
from .calibration import expected_calibration_error, fit_temperature_under_noise, probabilities
from .neighbours import resolve, similar_pairs, unit_rows
from .selection import search_subsample

log = logging.getLogger(__name__)

TRAINING_SPLITS = ("train", "validation")
SUSPECT_COLUMNS = [
    "file",
    "split",
    "given_class",
    "likely_class",
    "given_probability",
    "likely_probability",
]


def load_splits(splits: dict, storage: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Manifest rows of every split (with a ``split`` column) and their pooled features.

    ``splits`` maps each split to its (shard files, labels.npy, manifest.csv), whose
    rows are of ``storage`` (tlflow.pooling.STORAGES). The vectors are pooled block by
    block into one float32 matrix: the job holds no other copy of them.
    """
    joined = {split: split_rows.joined_split(*files) for split, files in splits.items()}
    rows = [features for features, _, _ in joined.values()]
    vectors = np.empty((sum(map(len, rows)), rows[0].pooled_width("avg", storage)), np.float32)
    start = 0
    for features in rows:
        features.pooled("avg", storage, out=vectors[start : start + len(features)])
        start += len(features)
    tables = [table.assign(split=split) for split, (_, _, table) in joined.items()]
    return pd.concat(tables, ignore_index=True), vectors


# --- suspected label errors


# The probe's L2 penalty per training image: scikit-learn's C is 1 / (penalty x
# images), so it suits any image count. Confident learning needs probabilities that
# mean what they say, and a weakly regularised probe of 1,280 features is sure of its
# own mistakes. 0.03 gave the lowest out-of-fold log loss of 0.3, 0.03 and 0.003
# (C = 1 / (0.03 x images)) on both catsdogs-dev and catsdogs-2k (EfficientNet-Lite0).
PROBE_PENALTY = 0.03


# Rows scored at a time: the probe's float64 input for them is about 32 MB (x 1,024 features).
SCORE_BLOCK = 4096


def _float64(features, rows) -> np.ndarray:
    """``features[rows]`` as float64, converted block by block: no float32 copy first."""
    out = np.empty((len(rows), features.shape[1]), np.float64)
    for start in range(0, len(rows), SCORE_BLOCK):
        out[start : start + SCORE_BLOCK] = features[rows[start : start + SCORE_BLOCK]]
    return out


def _fit_predict(features, fit_rows, y_fit, score_rows, n_classes: int, seed: int) -> np.ndarray:
    """Fit the probe on ``features[fit_rows]`` with labels ``y_fit``; probabilities of
    ``features[score_rows]`` for every class (0 for a class absent from y_fit)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    strength = 1 / (PROBE_PENALTY * len(y_fit))
    # Standardised in place: the probe holds one float64 copy of its training rows.
    probe = make_pipeline(
        StandardScaler(copy=False), LogisticRegression(C=strength, max_iter=2000, random_state=seed)
    )
    # float64: float32 probabilities miss a sum of 1 by more than log_loss allows.
    fit = _float64(features, fit_rows)
    with blas.fitting(fit.nbytes):
        probe.fit(fit, y_fit)
    del fit
    proba = np.zeros((len(score_rows), n_classes))
    for start in range(0, len(score_rows), SCORE_BLOCK):
        block = score_rows[start : start + SCORE_BLOCK]
        proba[start : start + len(block), probe.classes_] = probe.predict_proba(_float64(features, block))
    return proba


def probe_folds(labels, folds: int) -> int:
    """Folds the probe can use: at most the size of the smallest class (each fold must
    hold every class); 0 when that is under 2 or there are fewer than 2 classes."""
    counts = np.bincount(labels)
    counts = counts[counts > 0]
    if len(counts) < 2 or counts.min() < 2:
        return 0
    return int(min(folds, counts.min()))


def fitted_on(positions, labels, limit: int | None, seed: int):
    """``positions`` (into ``labels``), or a stratified subsample of about ``limit``
    of them where there are more (tlflow.selection.search_subsample)."""
    chosen = None if limit is None else search_subsample(labels[positions], limit, seed)
    return positions if chosen is None else positions[chosen]


def out_of_fold(features, rows, labels, n_classes: int, folds: int, seed: int, fit_rows=None) -> np.ndarray:
    """Probabilities of ``features[rows]`` (labelled ``labels``), each from a probe fit
    on the other folds (on about ``fit_rows`` of them, stratified, where they hold
    more), never on itself."""
    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedKFold

    proba = np.zeros((len(labels), n_classes))
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    for fit, held in splitter.split(rows, labels):
        fit = fitted_on(fit, labels, fit_rows, seed)
        proba[held] = _fit_predict(features, rows[fit], labels[fit], rows[held], n_classes, seed)
    log.info("probe: out-of-fold log loss %.4f", log_loss(labels, proba, labels=range(n_classes)))
    return proba


def class_thresholds(proba, labels) -> np.ndarray:
    """Confident learning's per-class threshold: the mean probability of a class among
    the images labelled with it (infinite for a class without images: never exceeded)."""
    thresholds = np.full(proba.shape[1], np.inf)
    for label in np.unique(labels):
        thresholds[label] = proba[labels == label, label].mean()
    return thresholds


def is_suspect(proba, labels, thresholds) -> np.ndarray:
    """True where another class's probability reaches its threshold and beats the given label's."""
    given = proba[np.arange(len(labels)), labels]
    return ((proba >= thresholds) & (proba > given[:, None])).any(axis=1)


def calibrate(proba, labels, known) -> tuple[np.ndarray, float, float]:
    """``proba`` after one temperature fitted on the ``known`` rows (out-of-fold),
    that temperature and the share of wrong labels fitted with it.

    A probe's out-of-fold probabilities can be surer, or less sure, than they
    deserve: one T across the folds, fitted on the log probabilities, makes them
    mean what they say. It is fitted with a rate of labels wrong at random
    (calibration.fit_temperature_under_noise), so that the probabilities say how
    likely each class is to be the true one: fitted on the given labels alone, T
    would soften every probability by the errors the audit is there to find. It
    changes no image's likely class.
    """
    logits = np.log(np.clip(proba, 1e-12, 1.0))
    temperature, noise = fit_temperature_under_noise(logits[known], labels[known])
    return probabilities(logits, temperature), temperature, noise


def score_labels(table: pd.DataFrame, features, n_classes: int, folds: int, seed: int = 0, fit_rows=None):
    """Calibrated probabilities of every image's classes, the folds used and the
    calibration ({"temperature": T, "label_noise": rate}, see calibrate).

    Training and validation images get out-of-fold probabilities (probe on train and
    validation pooled); other splits (test) get those of a probe fit on train and
    validation only, so their labels never shape what scores them, nor the
    temperature. Each probe is fitted on about ``fit_rows`` of its rows where it has
    more (stratified; every image is still scored). Returns (proba, folds,
    calibration): proba and calibration are None and folds 0 when a class is too
    small to cross-validate.
    """
    labels = table["label"].to_numpy()
    known = table["split"].isin(TRAINING_SPLITS).to_numpy()
    used = probe_folds(labels[known], folds)
    if not used:
        return None, 0, None
    proba = np.zeros((len(table), n_classes))
    rows = np.flatnonzero(known)
    proba[known] = out_of_fold(features, rows, labels[known], n_classes, used, seed, fit_rows)
    if not known.all():
        fit = fitted_on(np.arange(len(rows)), labels[known], fit_rows, seed)
        proba[~known] = _fit_predict(
            features, rows[fit], labels[known][fit], np.flatnonzero(~known), n_classes, seed
        )
    calibrated, temperature, noise = calibrate(proba, labels, known)
    log.info(
        "probe: temperature %.3f, labels wrong at random %.2f%%; out-of-fold ECE "
        "against the given labels %.4f before, %.4f after",
        temperature,
        100 * noise,
        expected_calibration_error(proba[known], labels[known]),
        expected_calibration_error(calibrated[known], labels[known]),
    )
    return calibrated, used, {"temperature": temperature, "label_noise": noise}


def suspects_table(table: pd.DataFrame, proba, classes) -> pd.DataFrame:
    """Suspected label errors, the lowest probability of the given label first.

    Thresholds come from the training and validation images' out-of-fold probabilities.
    """
    labels = table["label"].to_numpy()
    known = table["split"].isin(TRAINING_SPLITS).to_numpy()
    flagged = is_suspect(proba, labels, class_thresholds(proba[known], labels[known]))
    likely = proba.argmax(axis=1)
    columns = (
        table["file"],
        table["split"],
        table["class"],
        [classes[i] for i in likely],
        proba[np.arange(len(labels)), labels],
        proba[np.arange(len(labels)), likely],
    )
    result = pd.DataFrame(dict(zip(SUSPECT_COLUMNS, columns)))[flagged]
    return result.sort_values(["given_probability", "file"], ignore_index=True)


# --- duplicates and leaks


def exact_pairs(hashes) -> set[tuple[int, int]]:
    """(i, j), i < j, of every pair of rows with the same content hash."""
    groups: dict[str, list[int]] = {}
    for index, digest in enumerate(hashes):
        groups.setdefault(digest, []).append(index)
    return {(a, b) for rows in groups.values() for n, a in enumerate(rows) for b in rows[n + 1 :]}


def duplicates_table(
    table: pd.DataFrame,
    features,
    cutoff: float,
    split_order,
    neighbours: int,
    search: str = "auto",
    seed: int = 0,
    threads: int = 1,
    *,
    in_place: bool = False,
) -> pd.DataFrame:
    """Pairs of images that are the same file content (exact: all of them) or whose
    features are at least ``cutoff`` alike (near: each image's ``neighbours`` most
    similar, by the ``search`` of tlflow.neighbours.SEARCHES), within and across
    splits; most alike first.

    Each pair names the earlier split of ``split_order`` first (train before test).
    ``in_place`` scales a float32 ``features`` to unit rows itself, for a caller that
    needs them no more: no second copy of every vector.
    """
    unit = unit_rows(np.asarray(features, dtype=np.float32), in_place=in_place)
    i, j, similarity = similar_pairs(unit, cutoff, neighbours, search, seed, threads, normalised=True)
    pairs = dict(zip(zip(i.tolist(), j.tolist()), similarity.tolist()))
    for pair in exact_pairs(table["sha256"]) - pairs.keys():  # e.g. all-zero features
        pairs[pair] = float(unit[pair[0]] @ unit[pair[1]])
    a, b = (np.array([pair[n] for pair in pairs], dtype=np.int64) for n in (0, 1))
    files, splits, hashes = (table[c].to_numpy(dtype=object) for c in ("file", "split", "sha256"))
    rank = pd.Series(range(len(split_order)), index=list(split_order))[splits].to_numpy()
    swap = (rank[a] > rank[b]) | ((rank[a] == rank[b]) & (files[a] > files[b]))
    a, b = np.where(swap, b, a), np.where(swap, a, b)
    frame = pd.DataFrame(
        {
            "file_a": files[a],
            "split_a": splits[a],
            "file_b": files[b],
            "split_b": splits[b],
            "similarity": np.fromiter(pairs.values(), dtype=np.float64, count=len(pairs)),
            "kind": np.where(hashes[a] == hashes[b], "exact", "near"),
        }
    )
    return frame.sort_values(
        ["similarity", "file_a", "file_b"], ascending=[False, True, True], ignore_index=True
    )


def copies_in_train(duplicates: pd.DataFrame, split: str) -> int:
    """How many images of ``split`` have an exact or near copy in train."""
    leaks = duplicates[(duplicates.split_a == "train") & (duplicates.split_b == split)]
    return leaks["file_b"].nunique()


# --- embedding map


# The PCA map's directions are those of at most this many images (all of them
# below it), then every image is placed block by block: memory stays that of the
# sample, not of a float64 copy of every vector.
PROJECTION_SAMPLE = 50_000


def project(features, method: str, seed: int = 0) -> np.ndarray:
    """2-D coordinates of the standardised features: PCA, or t-SNE (slower, keeps neighbours)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from sklearn.preprocessing import StandardScaler

    if len(features) < 3:  # too few points to project: place them on a line
        return np.column_stack([np.arange(len(features)), np.zeros(len(features))])
    if method == "tsne":
        perplexity = min(30.0, (len(features) - 1) / 3)
        scaled = StandardScaler().fit_transform(features)
        return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(scaled)
    scaler = StandardScaler()
    for start in range(0, len(features), SCORE_BLOCK):
        scaler.partial_fit(features[start : start + SCORE_BLOCK])
    sample = np.arange(len(features))
    if len(features) > PROJECTION_SAMPLE:
        sample = np.sort(np.random.default_rng(seed).choice(sample, PROJECTION_SAMPLE, replace=False))
    pca = PCA(2, random_state=seed).fit(scaler.transform(features[sample]))
    xy = np.empty((len(features), 2))
    for start in range(0, len(features), SCORE_BLOCK):
        xy[start : start + SCORE_BLOCK] = pca.transform(
            scaler.transform(features[start : start + SCORE_BLOCK])
        )
    return xy


# --- the whole audit


def audit(
    splits: dict,
    classes,
    out_suspects,
    out_duplicates,
    out_embedding,
    out_summary,
    folds: int = 5,
    similarity: float = 0.9,
    neighbours: int = 5,
    search: str = "auto",
    projection: str = "pca",
    seed: int = 0,
    threads: int = 1,
    *,
    storage: str,
    probe_rows: int | None = None,
) -> dict:
    """Audit the cached features of ``splits`` (see load_splits); write the suspects,
    the duplicates, the 2-D map and a JSON of counts. Returns the counts.

    Each probe of the label audit is fitted on about ``probe_rows`` of its images
    where it has more (see score_labels)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(threads):
        table, features = load_splits(splits, storage)
        proba, used, fitted = score_labels(table, features, len(classes), folds, seed, probe_rows)
        if proba is None:
            label_audit = "skipped: a class has fewer than 2 training and validation images"
            log.warning("label audit %s: %s", label_audit, table["class"].value_counts().to_dict())
            suspects = pd.DataFrame(columns=SUSPECT_COLUMNS)
        else:
            label_audit = f"done with {used} folds"
            suspects = suspects_table(table, proba, classes)
            if used < folds:
                log.warning("the smallest class has %d images: %d folds, not %d", used, used, folds)
        xy = project(features, projection, seed)
        # Last: it scales the vectors to unit length where they lie.
        duplicates = duplicates_table(
            table, features, similarity, list(splits), neighbours, search, seed, threads, in_place=True
        )
    embedding = table[["file", "split", "class"]].assign(x=xy[:, 0], y=xy[:, 1])
    cross = duplicates[duplicates.split_a != duplicates.split_b]
    summary = {
        "images": table["split"].value_counts().reindex(list(splits)).to_dict(),
        "folds_asked": folds,
        "folds_used": used,
        "probe_rows": probe_rows,
        "label_audit": label_audit,
        # How the out-of-fold probabilities were calibrated before they are shown:
        # their temperature and the share of labels it found wrong (score_labels).
        "probe_temperature": fitted and fitted["temperature"],
        "probe_label_noise": fitted and fitted["label_noise"],
        "suspects": suspects["split"].value_counts().reindex(list(splits), fill_value=0).to_dict(),
        "similarity_cutoff": similarity,
        "near_neighbours_listed": neighbours,
        "near_duplicate_search": resolve(search, len(table)),
        "exact_duplicate_pairs": int((duplicates.kind == "exact").sum()),
        "near_duplicate_pairs": int((duplicates.kind == "near").sum()),
        "cross_split_pairs": len(cross),
        "copies_in_train": {s: copies_in_train(duplicates, s) for s in splits if s != "train"},
        "projection": projection,
    }
    tables = ((out_suspects, suspects), (out_duplicates, duplicates), (out_embedding, embedding))
    for path, frame in tables:
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=False, float_format="%.6g")
    with atomic_path(out_summary) as tmp:
        tmp.write_text(json.dumps(summary, indent=2, default=int) + "\n")
    log.info("audit: %s", summary)
    return summary
