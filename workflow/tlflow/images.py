"""Find the images of a dataset, check its layout, decode images to RGB.

Layout: ``<data_dir>/<split>/<class>/<image>``. Classes are the sorted names of
the sub-folders, matched between splits after Unicode NFC normalisation (a Mac
may write ``café`` decomposed); every split must have the same classes.
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from . import listing
from .listing import IMAGE_EXTENSIONS

# How load_rgb decodes; part of the backbone spec, so that a change of method
# recomputes cached features rather than mixing rows of two methods.
DECODE = "pillow-jpeg-draft-bilinear"


class DatasetError(ValueError):
    """The image folders are not laid out as the workflow needs."""


@dataclass
class Dataset:
    """What was found under ``data_dir``: image paths relative to it, by split and class."""

    data_dir: Path
    classes: list[str]  # NFC names
    images: dict[str, dict[str, list[str]]]  # split -> class -> sorted relative paths
    # Everything else under data_dir, (relative path, reason), sorted; a folder ends in '/'.
    ignored: list[tuple[str, str]] = field(default_factory=list)
    # What config 'corrections' changed: {"relabelled": n, "excluded": m} (tlflow.corrections).
    corrected: dict[str, int] = field(default_factory=dict)
    # split -> the images config 'corrections' excluded: no class, but still
    # extracted, so that a correction never changes what extraction reads.
    excluded: dict[str, list[str]] = field(default_factory=dict)
    # Multi-label data (tlflow.label_sets): a "class" is then an image's labels joined
    # by ``separator``; ``labels`` are the label names, sorted.
    labels: list[str] = field(default_factory=list)
    separator: str | None = None

    @property
    def names(self) -> list[str]:
        """What the head predicts: the labels of multi-label data, else the classes."""
        return self.labels if self.separator else self.classes

    def label_counts(self, split: str) -> dict[str, int]:
        """Images per label (multi-label) or class, in ``names``' order."""
        if not self.separator:
            return {cls: len(files) for cls, files in self.images[split].items()}
        found = dict.fromkeys(self.labels, 0)
        for cell, files in self.images[split].items():
            for label in cell.split(self.separator) if cell else []:
                found[label] += len(files)
        return found

    def count(self, split: str) -> int:
        return sum(len(files) for files in self.images[split].values())

    def extracted(self, split: str) -> list[str]:
        """Every image of ``split`` whose features are computed, sorted: its
        classes' images and the ones excluded from them."""
        by_class = self.images[split].values()
        return sorted([f for files in by_class for f in files] + self.excluded.get(split, []))


def code_points(name: str) -> str:
    """``name`` with every character outside printable ASCII as its code point (caf\\u00e9)."""
    return "".join(
        c if " " <= c <= "~" else f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}" for c in name
    )


def shown(names) -> str:
    """Names quoted, with their code points where two could look the same."""
    return (
        ", ".join(f"'{n}'" + ("" if code_points(n) == n else f" ({code_points(n)})") for n in names) or "none"
    )


def listed_entries(folder) -> list:
    try:
        return listing.entries(folder)
    except listing.ListingError as error:
        raise DatasetError(str(error)) from None


def class_dirs(split_dir: str | os.PathLike) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """``{NFC class name: folder name on disk}`` of a split, sorted, and what else it holds.

    One directory listing, no walk. Two folders that differ only in normalisation
    would be one class: refused, with their code points.
    """
    classes: dict[str, str] = {}
    ignored = []
    for entry, kind in listed_entries(split_dir):
        if not listing.is_folder(entry, kind):
            ignored.append(listing.outside(entry, kind, listing.NOT_IN_CLASS))
            continue
        name = unicodedata.normalize("NFC", entry.name)
        if name in classes:
            raise DatasetError(
                f"'{split_dir}' has class folders that differ only in Unicode "
                f"normalisation: {shown(sorted([classes[name], entry.name]))}. They name one "
                "class: move the images of one into the other and remove it."
            )
        classes[name] = entry.name
    return dict(sorted(classes.items())), sorted(ignored)


def class_folders(split_dir: str | os.PathLike) -> list[str]:
    """Sorted NFC class names of a split, as scan() finds them (a cluster job's CLASSES)."""
    return list(class_dirs(split_dir)[0])


def _undecodable(names: list[str]) -> list[str]:
    """Names that are not valid UTF-8 (Python keeps their bytes as surrogates)."""
    bad = []
    for name in names:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            bad.append(name.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
    return bad


def _outside_splits(data_dir: Path, splits: list[str]) -> list[tuple[str, str]]:
    """Entries of data_dir that are no configured split: named, never walked."""
    return [
        listing.outside(entry, kind, listing.NOT_A_SPLIT)
        for entry, kind in listed_entries(data_dir)
        if entry.name not in splits
    ]


def check_class_count(classes: list[str], folder: Path) -> None:
    """A classifier needs at least two classes: else a DatasetError with an example."""
    if not classes:
        raise DatasetError(
            f"'{folder}' has no class sub-folders. Put each class's "
            f"images in their own folder, e.g. {folder}/cats/*.jpg."
        )
    if len(classes) == 1:
        raise DatasetError(
            f"'{folder}' has one class folder ({shown(classes)}); a "
            "classifier needs at least two. Put each class's images in their own folder, "
            f"e.g. {folder}/{classes[0]}/ and {folder}/other/."
        )


def class_images(data_dir: Path, roots: dict, listed: list[str], fix: str):
    """walk() of the class folders ``roots`` (key -> (folder, prefix)); every image
    name must be UTF-8 and every class folder hold an image (else ``fix`` is the advice).

    data_dir and its ``listed`` sub-folders count as listed: a link back to them is named.
    """
    base = os.path.join(data_dir, "")
    seen = {listing.identify(base): base}
    seen.update({listing.identify(f"{base}{name}"): f"{base}{name}/" for name in listed})
    try:
        found, below = listing.walk(roots, seen, base)
    except listing.ListingError as error:
        raise DatasetError(str(error)) from None
    for key, kept in found.items():
        folder = roots[key][0]
        undecodable = _undecodable(kept)
        if undecodable:
            raise DatasetError(
                f"{len(undecodable)} file name(s) under '{folder}' are not "
                f"valid UTF-8 ({', '.join(undecodable[:5])}): rename them (e.g. with "
                "`convmv -f latin1 -t utf-8`), so that manifests can record them."
            )
        if not kept:
            why = dict(below).get(roots[key][1])  # a second path to a folder
            raise DatasetError(
                f"class folder '{folder}' has no images ("
                + (why or f"looked for {', '.join(sorted(IMAGE_EXTENSIONS))}")
                + f"). Add images or {fix}."
            )
    return found, below


def scan(data_dir: str | os.PathLike, splits: list[str]) -> Dataset:
    """List the images of each split and class; raise DatasetError on a bad layout.

    Every other entry under data_dir is in ``ignored`` with the reason.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DatasetError(
            f"data_dir '{data_dir}' does not exist. Set 'data_dir' in the config to "
            "the folder that holds your split folders (train/, validation/, ...)."
        )
    missing = [split for split in splits if not (data_dir / split).is_dir()]
    if missing:
        raise DatasetError(
            f"split folder(s) {', '.join(str(data_dir / s) for s in missing)} not found. "
            f"Create them with one sub-folder per class, or remove the split from 'splits' "
            "in the config."
        )
    ignored = _outside_splits(data_dir, splits)
    folders = {}
    for split in splits:
        folders[split], outside = class_dirs(data_dir / split)
        ignored.extend((f"{split}/{name}", reason) for name, reason in outside)
    reference_split = splits[0]
    classes = list(folders[reference_split])
    check_class_count(classes, data_dir / reference_split)
    for split, found in folders.items():
        if list(found) != classes:
            raise DatasetError(
                f"class folders differ between splits (compared after Unicode NFC "
                f"normalisation): '{data_dir / split}' against "
                f"'{data_dir / reference_split}' has missing: "
                f"{shown(sorted(set(classes) - set(found)))}, extra: "
                f"{shown(sorted(set(found) - set(classes)))}. Every split needs the "
                "same class folders."
            )
    roots = {
        (split, cls): (data_dir / split / disk, f"{split}/{disk}/")
        for split in splits
        for cls, disk in folders[split].items()
    }
    found, below = class_images(data_dir, roots, splits, "remove the folder from every split")
    ignored.extend(below)
    images: dict[str, dict[str, list[str]]] = {split: {} for split in splits}
    for (split, cls), kept in found.items():
        images[split][cls] = kept
    return Dataset(data_dir, classes, images, sorted(ignored))


def load_rgb(path: str | os.PathLike, size: tuple[int, int]) -> np.ndarray:
    """Decode one image as uint8 RGB of ``size`` = (height, width).

    Grayscale, palette, CMYK and 16-bit images are converted; transparent pixels are
    composited over white, so a transparent background does not turn black. Camera
    rotation (EXIF orientation) is applied, as a person viewing the photo sees it.
    A JPEG at least twice the size is decoded at 1/2, 1/4 or 1/8 scale by libjpeg
    itself (``draft``): a camera photo then decodes several times faster, and the
    decode is what bounds the extraction of large photos.
    """
    with Image.open(path) as image:
        # A square box of the longer side: the size still fits after an EXIF rotation.
        side = max(size)
        image.draft(image.mode, (side, side))
        image = ImageOps.exif_transpose(image)
        if image.mode == "P" and "transparency" in image.info:
            image = image.convert("RGBA")
        if image.mode in ("RGBA", "LA", "PA"):
            background = Image.new("RGBA", image.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, image.convert("RGBA"))
        image = image.convert("RGB")
        height, width = size
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.BILINEAR)
        return np.asarray(image, dtype=np.uint8)


def decode_all(paths, size: tuple[int, int]):
    """Decode ``paths`` with load_rgb; a broken file is listed, never fatal.

    Returns (uint8 array of the decoded images or None, their indices in ``paths``,
    [(index, "ErrorType: message")] of the rest).
    """
    arrays, good, errors = [], [], []
    for index, path in enumerate(paths):
        try:
            arrays.append(load_rgb(path, size))
            good.append(index)
        except Exception as error:  # Pillow raises many types for broken files
            errors.append((index, f"{type(error).__name__}: {error}"))
    return (np.stack(arrays) if arrays else None), good, errors
