"""Figures as PNGs a person can read; pyplot set up once, for servers without a display."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and cluster nodes
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import pandas as pd  # noqa: E402

from .atomic import atomic_path  # noqa: E402


def curve(history_csv, metric: str, out_png, title: str) -> None:
    """Train vs validation ``metric`` per epoch."""
    history = pd.read_csv(history_csv)
    figure, axes = plt.subplots(figsize=(6, 4), dpi=100)
    axes.plot(history["epoch"], history[metric], marker="o", label=f"train {metric}")
    axes.plot(history["epoch"], history[f"val_{metric}"], marker="o", label=f"validation {metric}")
    axes.set_title(title)
    axes.set_xlabel("epoch")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
    axes.set_ylabel(metric)
    axes.grid(alpha=0.3)
    axes.legend()
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
        rows, columns, figsize=(3 * columns, 3.6 * rows), dpi=100, squeeze=False,
        layout="constrained",  # room for multi-line titles, unlike tight_layout
    )  # fmt: skip
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
