"""Imbalanced classes: when the head weighs them, by how much, and which are rare.

``head.class_weight``: ``none`` (every image counts once), ``balanced``
(scikit-learn's: class c weighs n / (k * n_c), so every class carries the same
total weight) or ``auto`` (balanced when the training split's largest class has
more than RARE_RATIO times the images of its smallest, else none). The weights
come from the counts of the whole training split, so a head searched on a
subsample of it is weighted as the one refitted on every row.
"""

from __future__ import annotations

import numpy as np

# Largest / smallest training class above which ``auto`` weighs the classes and the
# summary warns. On cats-vs-dogs photos at 10:1, balanced weights raised the rare
# class's held-out recall by 4.7 points for 0.8 of the common one's; at 3:1 they
# traded 2.3 for 1.7, balanced accuracy even (docs/imbalance.md).
RARE_RATIO = 3.0
SETTINGS = ("none", "balanced", "auto")


def counts(labels, n_classes: int) -> np.ndarray:
    """Training rows per class, classes in order."""
    return np.bincount(np.asarray(labels), minlength=n_classes)


def ratio(class_counts) -> float:
    """Largest over smallest class count (inf when a class has none)."""
    class_counts = np.asarray(class_counts)
    return float(class_counts.max() / class_counts.min()) if class_counts.min() else float("inf")


def decide(labels, n_classes: int, setting: str) -> dict:
    """What ``setting`` means for these training labels: the recorded decision.

    {"setting", "applied" (none or balanced), "ratio", "counts", "weights" (one per
    class, or None)}.
    """
    if setting not in SETTINGS:
        raise ValueError(f"unknown head.class_weight '{setting}'; use one of {', '.join(SETTINGS)}")
    found = counts(labels, n_classes)
    skew = ratio(found)
    applied = setting if setting != "auto" else ("balanced" if skew > RARE_RATIO else "none")
    weights = None
    if applied == "balanced":
        # A class without training rows gets no weight: it has no row to weigh.
        weights = [float(len(labels) / (n_classes * c)) if c else 0.0 for c in found]
    return {
        "setting": setting,
        "applied": applied,
        "ratio": skew,
        "counts": [int(c) for c in found],
        "weights": weights,
    }


def as_dict(decision: dict) -> dict | None:
    """The weights as {class index: weight} (scikit-learn's and Keras's form), or None."""
    weights = decision["weights"]
    return None if weights is None else dict(enumerate(weights))


def class_scores(labels, predicted, n_classes: int) -> dict:
    """Balanced accuracy (mean recall over the classes present) and macro F1 (over
    every class; one never predicted scores 0)."""
    from sklearn import metrics as skm

    labels, predicted = np.asarray(labels), np.asarray(predicted)
    present = np.unique(labels)
    recall = skm.recall_score(labels, predicted, labels=present, average=None, zero_division=0)
    f1 = skm.f1_score(labels, predicted, labels=range(n_classes), average="macro", zero_division=0)
    return {"balanced_accuracy": float(np.mean(recall)), "macro_f1": float(f1)}


def rare_warnings(train_counts: dict, decision: dict | None) -> list[str]:
    """Sentences naming each rare class of the training split with the counts.

    A class is rare when the largest has more than RARE_RATIO times its images.
    ``decision``: the head's recorded class weights (None in metadata from before them).
    """
    largest_class = max(train_counts, key=train_counts.get)
    largest = train_counts[largest_class]
    rare = {c: n for c, n in train_counts.items() if n * RARE_RATIO < largest}
    if not rare:
        return []
    named = ", ".join(f"'{c}' with {n:,}" for c, n in sorted(rare.items(), key=lambda item: item[1]))
    weighted = decision is not None and decision["applied"] == "balanced"
    remedy = (
        "the head was trained with balanced class weights; see the per-class recall below"
        if weighted
        else "the head was trained without class weights, so it may rarely predict them: "
        "set 'head: class_weight: balanced' (or auto) and 'head: criterion: balanced_accuracy'"
    )
    return [
        f"{len(rare)} rare class(es) in train: {named} images, against {largest:,} of "
        f"'{largest_class}'; {remedy}."
    ]
