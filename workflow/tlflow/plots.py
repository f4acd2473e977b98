"""Every figure of the workflow, as PNGs a person can read; pyplot set up once, for
servers without a display. Figures are drawn from the tables the stages write."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and cluster nodes
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from .atomic import atomic_path  # noqa: E402
from .metrics import confident_mistakes, confused_pairs  # noqa: E402
from .multilabel_metrics import matrix  # noqa: E402
from .multilabel_metrics import mistakes as label_mistakes  # noqa: E402
from .probabilities import probability_columns  # noqa: E402
from .readers import read_table  # noqa: E402


def curve(history_csv, metric: str, out_png, title: str, best_epoch: int | None = None) -> None:
    """Train vs validation ``metric`` per epoch; the kept epoch marked."""
    history = read_table(history_csv)
    figure, axes = plt.subplots(figsize=(6, 4), dpi=100)
    axes.plot(history["epoch"], history[metric], marker="o", label=f"train {metric}")
    axes.plot(history["epoch"], history[f"val_{metric}"], marker="o", label=f"validation {metric}")
    if best_epoch is not None:
        axes.axvline(best_epoch, color="grey", linestyle="--", label=f"kept: epoch {best_epoch}")
    axes.set_title(title)
    axes.set_xlabel("epoch")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
    axes.set_ylabel(metric)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    save(figure, out_png)


# Above this many classes a heat map's cells and labels are too small to read: the
# figure lists the most confused pairs instead (all counts stay in the CSV).
MATRIX_CLASSES = 20
PAIRS_SHOWN = 30


def confusion(confusion_csv, out_png, title: str) -> None:
    """The confusion matrix as a heat map, each cell labelled with its count; above
    MATRIX_CLASSES classes, the PAIRS_SHOWN most confused pairs as sorted bars.
    Multi-label data's per-label counts (multilabel_metrics.label_counts): one row
    of outcomes per label."""
    counts = read_table(confusion_csv, index_col=0)
    per_label = counts.index.name == "label"
    if len(counts) > MATRIX_CLASSES and not per_label:
        confused_pairs_figure(counts, out_png, title)
        return
    n, columns = len(counts), counts.shape[1]
    side = max(4.0, 1.0 + 0.6 * n)
    figure, axes = plt.subplots(figsize=(max(side, 1.0 + 0.9 * columns) + 1, side), dpi=100)
    image = axes.imshow(counts.to_numpy(), cmap="Blues", aspect="auto" if per_label else "equal")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    axes.set_xticks(
        range(columns),
        [c.replace("_", " ") for c in counts.columns] if per_label else counts.columns,
        rotation=45,
        ha="right",
    )
    axes.set_yticks(range(n), counts.index)
    axes.set_xlabel("images" if per_label else "predicted class")
    axes.set_ylabel("label" if per_label else "true class")
    axes.set_title(title)
    threshold = counts.to_numpy().max() / 2
    for (row, col), value in np.ndenumerate(counts.to_numpy()):
        colour = "white" if value > threshold else "black"
        axes.text(col, row, str(value), ha="center", va="center", color=colour)
    figure.tight_layout()
    save(figure, out_png)


def confused_pairs_figure(counts, out_png, title: str, most: int = PAIRS_SHOWN) -> None:
    """The ``most`` most frequent (true -> predicted) mistakes of confusion ``counts``,
    one bar each, the largest at the top, with its share of the true class."""
    pairs = confused_pairs(counts)
    shown = pairs.head(most)
    mistakes = int(pairs["images"].sum())
    figure, axes = plt.subplots(figsize=(9, 1.5 + 0.3 * max(1, len(shown))), dpi=100)
    positions = np.arange(len(shown))
    axes.barh(positions, shown["images"], color="tab:blue")
    labels = [f"{row.true_class} \u2192 {row.predicted_class}" for row in shown.itertuples()]
    axes.set_yticks(positions, labels)
    axes.invert_yaxis()  # the most confused pair first
    for position, row in zip(positions, shown.itertuples()):
        axes.text(
            row.images,
            position,
            f" {row.images} ({row.share_of_true_class:.0%} of {row.true_class})",
            va="center",
            fontsize=8,
        )
    axes.margins(x=0.3)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("images (true class \u2192 predicted class)")
    shown_images = int(shown["images"].sum())
    axes.set_title(
        f"{title}\n{len(counts)} classes: the {len(shown)} most confused pairs, "
        f"{shown_images} of {mistakes} mistakes\n(every count: confusion_matrix.csv)"
    )
    if not len(shown):
        axes.text(
            0.5,
            0.5,
            f"no mistakes ({int(counts.to_numpy().sum())} images)",
            ha="center",
            va="center",
            transform=axes.transAxes,
        )
    figure.tight_layout()
    save(figure, out_png)


def mistakes(predictions_csv, data_dir, out_png, title: str, most: int = 16, separator: str = "|") -> int:
    """Grid of the most confident mistakes, each captioned; returns how many are shown.
    Of multi-label predictions (labels joined by ``separator``): each image's missed
    and extra labels."""
    table = read_table(predictions_csv)
    classes = [c.removeprefix("prob_") for c in table.columns if c.startswith("prob_")]
    if "true_labels" in table:
        shown = label_mistakes(table, classes, separator, most)
        cells = [
            (
                row.file,
                f"{Path(row.file).name}\nmissed: {row.missed or '-'}\nextra: {row.extra or '-'} "
                f"({row.confidence:.3f})",
            )
            for row in shown.itertuples()
        ]
        image_grid(cells, data_dir, out_png, title, empty=f"no mistakes\n({len(table)} images)")
        return len(shown)
    shown = confident_mistakes(table, classes, most)
    cells = [
        (
            row.file,
            f"{Path(row.file).name}\ntrue: {row.true_class}\n"
            f"predicted: {row.predicted_class} ({row.confidence:.3f})",
        )
        for row in shown.itertuples()
    ]
    image_grid(cells, data_dir, out_png, title, empty=f"no mistakes\n({len(table)} images)")
    return len(shown)


def precision_recall(predictions_csv, out_png, title: str, separator: str) -> None:
    """Each label's precision-recall curve on multi-label predictions, its operating
    point (the head's threshold) marked and its average precision in the legend."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    table = read_table(predictions_csv)
    classes = [c.removeprefix("prob_") for c in table.columns if c.startswith("prob_")]
    truth = matrix(table["true_labels"], classes, separator, predictions_csv)
    predicted = matrix(table["predicted_labels"], classes, separator, predictions_csv)
    proba = table[probability_columns(classes)].to_numpy(dtype=np.float64)
    figure, axes = plt.subplots(figsize=(6, 5), dpi=100)
    for j, label in enumerate(classes):
        if not truth[:, j].any():  # no curve without a positive image
            continue
        precision, recall, _ = precision_recall_curve(truth[:, j], proba[:, j])
        ap = average_precision_score(truth[:, j], proba[:, j])
        (line,) = axes.plot(recall, precision, drawstyle="steps-post", label=f"{label} (AP {ap:.3f})")
        found = (truth[:, j] & predicted[:, j]).sum()
        point = (found / truth[:, j].sum(), found / predicted[:, j].sum() if predicted[:, j].any() else 1.0)
        axes.plot(*point, marker="o", color=line.get_color())
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.set_xlabel("recall")
    axes.set_ylabel("precision")
    axes.set_title(f"{title}\n(dots: each label's threshold)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    save(figure, out_png)


def reliability(reliability_csv, out_png, title: str) -> None:
    """Reliability diagram: accuracy against confidence per bin, before and after calibration."""
    table = read_table(reliability_csv)
    figure, axes = plt.subplots(figsize=(5, 5), dpi=100)
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfectly calibrated")
    for name, group in table.groupby("probabilities", sort=False):
        used = group[group["images"] > 0]
        axes.plot(used["mean_confidence"], used["accuracy"], marker="o", label=name)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.set_xlabel("confidence (probability of the predicted class)")
    axes.set_ylabel("accuracy")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    save(figure, out_png)


def comparison(comparison_csv, out_png, title: str) -> None:
    """Backbones side by side: accuracy, log loss and ECE on validation and evaluation."""
    table = read_table(comparison_csv)
    metrics = [("accuracy", "accuracy"), ("log_loss", "log loss"), ("ece", "ECE")]
    figure, grid = plt.subplots(1, 3, figsize=(12, 0.5 * len(table) + 2.5), dpi=100, squeeze=False)
    positions = np.arange(len(table))
    series = [("validation", "validation"), ("evaluation", "evaluation split")]
    if "fine_tuned_validation_accuracy" in table:  # fine-tuned models beside the frozen ones
        series += [
            ("fine_tuned_validation", "fine-tuned, validation"),
            ("fine_tuned_evaluation", "fine-tuned, evaluation split"),
        ]
    height = 0.8 / len(series)
    for axes, (column, label) in zip(grid[0], metrics):
        for i, (prefix, name) in enumerate(series):
            offset = height * (i + 0.5) - 0.4
            axes.barh(positions + offset, table[f"{prefix}_{column}"], height=height, label=name)
        axes.set_yticks(positions, table["backbone"])
        axes.invert_yaxis()  # the best ranked first, at the top
        axes.set_xlabel(label)
        axes.grid(alpha=0.3, axis="x")
    grid[0, 0].legend()
    figure.suptitle(title)
    figure.tight_layout()
    save(figure, out_png)


def save(figure, out_png) -> None:
    """Write a figure atomically and free it (pyplot keeps every open figure)."""
    with atomic_path(out_png) as tmp:
        figure.savefig(tmp)
    plt.close(figure)


def image_grid(cells, data_dir, out_png, title: str, columns: int = 4, empty: str = "") -> None:
    """Images of ``data_dir`` in a grid, each under its caption; ``cells`` holds
    (file relative to data_dir, caption) pairs. ``empty`` is shown when there are none.
    """
    from PIL import Image

    columns = min(columns, max(1, len(cells)))
    rows = max(1, math.ceil(len(cells) / columns))
    figure, grid = plt.subplots(
        rows,
        columns,
        figsize=(3 * columns, 3.6 * rows),
        dpi=100,
        squeeze=False,
        layout="constrained",  # room for multi-line titles, unlike tight_layout
    )
    for axes in grid.flat:
        axes.axis("off")
    if not cells:
        grid[0, 0].text(0.5, 0.5, empty, ha="center", va="center")
    for axes, (file, caption) in zip(grid.flat, cells):
        try:
            with Image.open(Path(data_dir, file)) as image:
                axes.imshow(image.convert("RGB"))
        except OSError as error:  # moved or broken since the features were made
            axes.text(0.5, 0.5, f"cannot open:\n{error}", ha="center", va="center", wrap=True)
        axes.set_title(caption, fontsize=8)
    figure.suptitle(title)
    save(figure, out_png)
