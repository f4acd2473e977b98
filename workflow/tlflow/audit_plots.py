"""Figures of the data audit: suspected label errors, the closest cross-split pairs and
the 2-D map of the images. Drawn from the audit's tables, without scikit-learn."""

from __future__ import annotations

from pathlib import Path

from .plots import image_grid, plt, save
from .readers import read_table


def plot_suspects(suspects_csv, data_dir, out_png, title: str, most: int) -> int:
    """Grid of the strongest suspected label errors; returns how many are shown."""
    shown = read_table(suspects_csv).head(most)
    cells = [
        (
            row.file,
            f"{Path(row.file).name} ({row.split})\ngiven: {row.given_class} "
            f"({row.given_probability:.3f})\nlikely: {row.likely_class} "
            f"({row.likely_probability:.3f})",
        )
        for row in shown.itertuples()
    ]
    image_grid(cells, data_dir, out_png, title, empty="no suspected label errors")
    return len(shown)


def plot_pairs(duplicates_csv, data_dir, out_png, title: str, most: int) -> int:
    """The most alike pairs from different splits side by side; returns how many pairs."""
    pairs = read_table(duplicates_csv)
    shown = pairs[pairs.split_a != pairs.split_b].head(most)
    # The whole relative path: it names the split and the class folder of each copy.
    cells = [
        (file, f"{file}\n{row.kind} copy, similarity {row.similarity:.3f}")
        for row in shown.itertuples()
        for file in (row.file_a, row.file_b)
    ]
    image_grid(cells, data_dir, out_png, title, columns=2, empty="no copies across splits")
    return len(shown)


def plot_embedding(embedding_csv, predictions_csv, out_png, title: str) -> int:
    """Every image as a point of the 2-D map, coloured by class; the evaluation's
    misclassified images circled. Returns how many are circled."""
    points = read_table(embedding_csv)
    predictions = read_table(predictions_csv)
    wrong = predictions.loc[predictions.true_class != predictions.predicted_class, "file"]
    marked = points[points.file.isin(wrong)]
    figure, axes = plt.subplots(figsize=(7, 6), dpi=100)
    for cls, group in points.groupby("class"):
        axes.scatter(group.x, group.y, s=12, alpha=0.7, label=cls)
    axes.scatter(
        marked.x,
        marked.y,
        s=80,
        facecolors="none",
        edgecolors="black",
        linewidths=1.2,
        label=f"misclassified ({len(marked)})",
    )
    axes.set_title(title)
    axes.set_xticks([])  # the axes of a projection have no unit worth reading
    axes.set_yticks([])
    axes.legend(loc="best", fontsize=8)
    figure.tight_layout()
    save(figure, out_png)
    return len(marked)
