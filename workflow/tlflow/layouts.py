"""The three layouts of a data set, and the split by content hash.

- Split folders: ``<data_dir>/<split>/<class>/<image>`` (tlflow.images.scan).
- One folder of class folders: ``<data_dir>/<class>/<image>``, split here.
- A label table (tlflow.label_table): any files under data_dir, labels (and
  optionally splits) from a CSV; the rows without a split are split here.

An image's split depends on its content hash alone: the hash as a number in
[0, 1) falls in validation's interval at the bottom, the evaluation split's at the
top, or train's between. So adding or removing images never moves another one,
exact copies always share a split (whatever their labels), every machine splits
the same data the same way, and changing one fraction only moves images between
that split and train. Each class's count in a split is binomial around its
fraction (docs/layouts.md states the bound); a class left without an image in a
split is refused, as a head chosen, calibrated or scored without it would be.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from . import corrections as corrections_table
from . import images, label_sets, label_table, listing, manifest
from .images import Dataset, DatasetError
from .splits import SELECTION, TRAIN

# Of every split but train, when the config sets no 'split'.
DEFAULT_FRACTION = 0.1
# Fewer validation images of a class than this: chosen and calibrated on too few.
FEW = 5


def fractions(splits: list[str], asked: dict | None) -> dict[str, float]:
    """The fraction of each split but train: ``asked`` (config 'split'), else DEFAULT_FRACTION."""
    held_out = [split for split in splits if split != TRAIN]
    if asked is None:
        return dict.fromkeys(held_out, DEFAULT_FRACTION)
    unknown = sorted(set(asked) - set(held_out))
    missing = [split for split in held_out if split not in asked]
    if unknown or missing:
        raise DatasetError(
            f"config 'split' {asked} must give a fraction to each split of 'splits' "
            f"{splits} but train (which takes the rest): "
            + (f"'{', '.join(missing)}' has none" if missing else "")
            + ("; " if missing and unknown else "")
            + (f"'{', '.join(unknown)}' is not in 'splits' (or is train)" if unknown else "")
            + "."
        )
    if sum(asked.values()) >= 1:
        raise DatasetError(
            f"config 'split' {asked} leaves no image to train: its fractions must add up to less than 1."
        )
    return {split: asked[split] for split in held_out}


def split_of(digest: str, shares: dict[str, float]) -> str:
    """The split of an image with content hash ``digest`` (hex sha256)."""
    position = int(digest[:16], 16) / 2**64
    if position < shares.get(SELECTION, 0.0):
        return SELECTION
    top = 1.0
    for split, share in shares.items():
        if split != SELECTION:
            top -= share
            if position >= top:
                return split
    return TRAIN


def assign(data_dir: Path, classes: list[str], rows, splits: list[str], shares, cache, whole: bool = True):
    """``{split: {class: sorted files}}`` of ``rows`` (file, class, split or None):
    a row without a split gets split_of its content hash (through ``cache``, a
    manifest.HashCache, so the manifests reuse it). With ``whole``, every split must
    hold every class (multi-label data's classes are label combinations: its labels
    are checked instead, label_sets.check_training)."""
    unsplit = [file for file, _, split in rows if split is None]
    root = os.fspath(data_dir)
    digests = dict(zip(unsplit, manifest.digests(cache, [f"{root}/{f}" for f in unsplit])))
    found: dict[str, dict[str, list[str]]] = {s: {c: [] for c in classes} for s in splits}
    for file, cls, split in rows:
        found[split or split_of(digests[file], shares)][cls].append(file)
    empty = [(split, cls) for split in splits for cls in classes if whole and not found[split][cls]]
    if empty:
        sizes = Counter(cls for _, cls, _ in rows)
        raise DatasetError(
            "the split by content hash left "
            + "; ".join(f"'{split}' without class '{cls}' ({sizes[cls]} images)" for split, cls in empty)
            + ". A head chosen, calibrated or scored without a class is wrong for it. "
            "Add images of the class (with a fraction f, about 5/f images of a class, "
            "50 at 0.1, give it one in the split with 99% odds), raise the split's fraction in config "
            "'split', or name each image's split (a 'split' column of the label table, "
            "or split folders)."
        )
    for by_class in found.values():
        for files in by_class.values():
            files.sort()
    return found


def warnings(dataset: Dataset) -> list[str]:
    """A sentence for each split but train with fewer than FEW images of a class (or label)."""
    found = []
    kind = "label(s)" if dataset.separator else "class(es)"
    for split in dataset.images:
        few = {cls: n for cls, n in dataset.label_counts(split).items() if n < FEW}
        if split != TRAIN and few:
            found.append(
                f"few {split} images of {kind} {images.shown(sorted(few))} "
                f"({', '.join(map(str, few.values()))}): the scores it gives on them are "
                f"uncertain. Add images (or, where the workflow splits the folder, raise "
                f"config 'split: {split}:')."
            )
    return found


def counts(dataset: Dataset) -> str:
    """One line: images per split and class (or label)."""
    return "; ".join(
        f"{split} {dataset.count(split)} ("
        + ", ".join(f"{cls} {n}" for cls, n in dataset.label_counts(split).items())
        + ")"
        for split in dataset.images
    )


def _holds_images(folder: Path) -> bool:
    return any(
        kind == "file" and listing.is_image(entry.name) for entry, kind in images.listed_entries(folder)
    )


def _split_folders(data_dir: Path, splits: list[str]) -> bool:
    """Whether data_dir is split into folders; one that mixes both layouts is refused."""
    folders = [
        entry.name for entry, kind in images.listed_entries(data_dir) if listing.is_folder(entry, kind)
    ]
    named = [name for name in folders if name in splits]
    if not named:
        return False
    classes = [name for name in folders if name not in splits and _holds_images(data_dir / name)]
    if classes:
        raise DatasetError(
            f"data_dir '{data_dir}' mixes split folders ({', '.join(f'{n}/' for n in named)}) "
            f"with class folders of images ({', '.join(f'{n}/' for n in classes[:5])}"
            f"{', ...' if len(classes) > 5 else ''}): use one layout. Move each class "
            f"folder into every split (e.g. {named[0]}/{classes[0]}/), or move the "
            "split folders' class folders up into data_dir (the workflow then splits "
            "them by content hash), or move the class folders out of data_dir."
        )
    return True


def _class_folders(data_dir: Path) -> tuple[list[str], list[tuple[str, str]], list[tuple[str, str]]]:
    """(classes, [(file, class)], ignored) of one folder of class folders."""
    folders, ignored = images.class_dirs(data_dir)
    classes = list(folders)
    images.check_class_count(classes, data_dir)
    roots = {cls: (data_dir / disk, f"{disk}/") for cls, disk in folders.items()}
    found, below = images.class_images(data_dir, roots, [], "remove the folder")
    return classes, [(f, cls) for cls in classes for f in found[cls]], ignored + below


def scan(
    data_dir: str | os.PathLike,
    splits: list[str],
    cache,
    split: dict | None = None,
    labels: str | None = None,
    columns: dict | None = None,
    corrections: str | None = None,
    separator: str = "|",
) -> Dataset:
    """The data set in whichever layout data_dir has; config 'split', 'labels',
    'label_columns', 'corrections' (tlflow.corrections, applied last) and
    'label_separator' as given. ``cache`` (a manifest.HashCache) hashes the images to split."""
    dataset = _found(data_dir, splits, cache, split, labels, columns, separator)
    if corrections is None:
        return dataset
    if dataset.separator:
        raise DatasetError(
            f"config 'corrections' ({corrections}) relabels single-label data only; the label "
            f"table {labels} has several labels per image: correct them in the table itself."
        )
    return corrections_table.apply(dataset, corrections_table.read(corrections), corrections)


def _found(data_dir, splits, cache, split, labels, columns, separator) -> Dataset:
    """The data set as the layout (or label table) gives it."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DatasetError(
            f"data_dir '{data_dir}' does not exist. Set 'data_dir' in the config to the "
            "folder that holds your images: split folders (train/, validation/, ...), "
            "class folders, or the files a label table ('labels') lists."
        )
    if labels is None and _split_folders(data_dir, splits):
        return images.scan(data_dir, splits)
    shares = fractions(splits, split)
    if labels is None:
        classes, pairs, ignored = _class_folders(data_dir)
        rows = [(file, cls, None) for file, cls in pairs]
    else:
        rows, ignored, multi_label = label_table.read(labels, data_dir, splits, columns or {}, separator)
        classes = sorted({cls for _, cls, _ in rows})
        if multi_label:
            found = assign(data_dir, classes, rows, splits, shares, cache, whole=False)
            names = label_sets.names(classes, separator)
            label_sets.check_training(
                [c for c, files in found[TRAIN].items() if files], names, separator, labels
            )
            return Dataset(data_dir, classes, found, sorted(ignored), labels=names, separator=separator)
    found = assign(data_dir, classes, rows, splits, shares, cache)
    return Dataset(data_dir, classes, found, sorted(ignored))
