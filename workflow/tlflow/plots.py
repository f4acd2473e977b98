"""Figures as PNGs a person can read; pyplot set up once, for servers without a display."""

from __future__ import annotations

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
