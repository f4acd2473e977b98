"""Benchmark: multi-label heads on 2x2 mosaics of real cats-vs-dogs photos.

Each mosaic holds 1 to 4 photos (the other cells grey), each a cat or a dog, at
random places; its labels are ``cat`` (a cat in it), ``dog`` (a dog in it) and
``crowd`` (three or four animals). Training mosaics are made of DATA_DIR's train
photos; validation and held-out mosaics of its validation photos, split in two
halves so that no photo is in both. Every mosaic is extracted once (the backbone
at 128x128, features stored as the workflow stores them); then for each head kind
the default head grid of that kind is fitted, chosen on validation by mean average
precision and calibrated per label, as the workflow does (tlflow.head.select,
finalise), and scored on the held-out mosaics: mean average precision, macro and
micro F1 and exact match at the per-label thresholds (chosen on validation) and at
a fixed 0.5, and each label's calibration error.

    PYTHONPATH=workflow .venv/bin/python benchmarks/multilabel.py DATA_DIR
        [--mosaics 1000 300 300] [--seed 0] [--backbone FILE]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from augmentation import defaults
from heads import DEFAULT_BACKBONE, cpu_name
from PIL import Image
from tlflow import head, multilabel, multilabel_metrics, pooling, selection
from tlflow.probabilities import logits

LABELS = ["cat", "crowd", "dog"]  # sorted, as the workflow orders them
SIZE, TILE = 128, 64  # the mosaic as the backbone sees it, and each photo in it


def photos(folder: Path) -> dict[str, list[Path]]:
    return {animal: sorted((folder / f"{animal}s").iterdir()) for animal in ("cat", "dog")}


def mosaics(pool: dict[str, list[Path]], count: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """``count`` mosaics of ``pool``'s photos and their 0/1 labels (LABELS' order)."""
    images = np.full((count, SIZE, SIZE, 3), 128, np.uint8)
    labels = np.zeros((count, len(LABELS)), np.int64)
    for i in range(count):
        animals = rng.choice(["cat", "dog"], size=rng.integers(1, 5))
        for cell, animal in zip(rng.permutation(4), animals):
            path = pool[animal][rng.integers(len(pool[animal]))]
            with Image.open(path) as photo:
                tile = np.asarray(photo.convert("RGB").resize((TILE, TILE), Image.BILINEAR))
            row, col = divmod(int(cell), 2)
            images[i, row * TILE : (row + 1) * TILE, col * TILE : (col + 1) * TILE] = tile
        labels[i] = ["cat" in animals, len(animals) >= 3, "dog" in animals]
    return images, labels


def extract(backbone, images: np.ndarray) -> np.ndarray:
    """The backbone's maps summarised as the workflow stores them (pooled rows)."""
    maps = backbone.predict(images.astype(np.float32), batch_size=64, verbose=0)
    return pooling.summarise(maps)


def fit(kind: str, train, validation, seed: int):
    """The default grid of one kind, chosen and calibrated on validation: (model,
    temperatures, thresholds, candidate, seconds)."""
    started = time.perf_counter()
    settings = {**defaults()["head"], "kind": kind, "seed": seed}
    n = len(LABELS)
    table, winner, state = head.select(train, validation, n, settings, "pooled")
    candidate = {k: v for k, v in table[winner].items() if k in selection.GRID_KEYS}
    model, temperatures, _ = head.finalise(
        list(train[0].shape[1:]), n, settings, candidate, state, validation[1], "pooled"
    )
    return model, temperatures, state["thresholds"], candidate, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument(
        "--mosaics", type=int, nargs=3, default=[1000, 300, 300], metavar=("TRAIN", "VALIDATION", "HELD_OUT")
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backbone", type=Path, default=DEFAULT_BACKBONE)
    args = parser.parse_args()
    import keras

    rng = np.random.default_rng(args.seed)
    validation_photos = photos(args.data_dir / "validation")
    halves = [{animal: files[part::2] for animal, files in validation_photos.items()} for part in (0, 1)]
    pools = {"train": photos(args.data_dir / "train"), "validation": halves[0], "held_out": halves[1]}
    backbone = keras.models.load_model(args.backbone)
    data, started = {}, time.perf_counter()
    for (split, pool), count in zip(pools.items(), args.mosaics):
        images, labels = mosaics(pool, count, rng)
        data[split] = (extract(backbone, images), labels)
        print(
            f"{split}: {count} mosaics, label shares {dict(zip(LABELS, labels.mean(axis=0).round(2).tolist()))}"
        )
    print(f"mosaics made and extracted in {time.perf_counter() - started:.0f} s")
    test_x, test_y = data["held_out"]
    rows = []
    for kind in ("linear", "mlp"):
        model, temperatures, thresholds, candidate, seconds = fit(
            kind, data["train"], data["validation"], args.seed
        )
        proba = multilabel.probabilities(logits(model, test_x), temperatures)
        tuned = multilabel_metrics.metrics(test_y, proba, LABELS, thresholds)
        fixed = multilabel_metrics.metrics(test_y, proba, LABELS, [0.5] * len(LABELS))
        rows.append((f"{kind} ({candidate['pooling']})", tuned, fixed, thresholds, seconds))
    print(f"\nheld-out mosaics: {len(test_y)}; CPU: {cpu_name()}")
    print(
        "| head | mAP | macro F1 (thresholds / 0.5) | micro F1 (thresholds / 0.5) | exact match (thresholds / 0.5) "
        "| ECE cat / crowd / dog | thresholds cat / crowd / dog | head s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, tuned, fixed, thresholds, seconds in rows:
        ece = " / ".join(f"{tuned['per_label'][label]['ece']:.3f}" for label in LABELS)
        print(
            f"| {name} | {tuned['mean_average_precision']:.3f} | {tuned['macro_f1']:.3f} / {fixed['macro_f1']:.3f} "
            f"| {tuned['micro_f1']:.3f} / {fixed['micro_f1']:.3f} "
            f"| {tuned['exact_match']:.3f} / {fixed['exact_match']:.3f} | {ece} "
            f"| {' / '.join(f'{t:.2f}' for t in thresholds)} | {seconds:.0f} |"
        )


if __name__ == "__main__":
    main()
