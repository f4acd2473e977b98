"""Find the images of a dataset, check its layout, decode images to RGB.

Layout: ``<data_dir>/<split>/<class>/<image>``. Classes are the sorted names of
the sub-folders; every split must have the same classes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# Extensions Pillow decodes; anything else in a class folder is listed, not read.
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
)
# How load_rgb decodes; part of the backbone spec, so that a change of method
# recomputes cached features rather than mixing rows of two methods.
DECODE = "pillow-jpeg-draft-bilinear"


class DatasetError(ValueError):
    """The image folders are not laid out as the workflow needs."""


@dataclass
class Dataset:
    """What was found under ``data_dir``: image paths relative to it, by split and class."""

    data_dir: Path
    classes: list[str]
    images: dict[str, dict[str, list[str]]]  # split -> class -> sorted relative paths
    ignored: list[str] = field(default_factory=list)  # non-image files, relative

    def count(self, split: str) -> int:
        return sum(len(files) for files in self.images[split].values())


def is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS and not name.startswith(".")


def class_folders(split_dir: str | os.PathLike) -> list[str]:
    """Sorted class folder names of a split: one directory listing, no walk."""
    return sorted(
        entry.name
        for entry in os.scandir(split_dir)
        if entry.is_dir() and not entry.name.startswith(".")
    )


def files_below(folder: str | os.PathLike) -> list[str]:
    """Every file below ``folder`` (sub-folders included), relative to it, sorted.

    Hidden folders are skipped and folder links are not followed, as in os.walk.
    Plain strings, no Path objects: a million files list in about a second.
    """
    found = []
    pending = [(os.fspath(folder), "")]
    while pending:
        directory, prefix = pending.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.is_dir():
                    if not entry.is_symlink() and not entry.name.startswith("."):
                        pending.append((entry.path, f"{prefix}{entry.name}/"))
                else:
                    found.append(prefix + entry.name)
    found.sort()
    return found


def _undecodable(names: list[str]) -> list[str]:
    """Names that are not valid UTF-8 (Python keeps their bytes as surrogates)."""
    bad = []
    for name in names:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            bad.append(name.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
    return bad


def scan(data_dir: str | os.PathLike, splits: list[str]) -> Dataset:
    """List the images of each split and class; raise DatasetError on a bad layout."""
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
    class_sets = {split: class_folders(data_dir / split) for split in splits}
    reference_split = splits[0]
    classes = class_sets[reference_split]
    if not classes:
        raise DatasetError(
            f"'{data_dir / reference_split}' has no class sub-folders. Put each class's "
            f"images in their own folder, e.g. {data_dir / reference_split}/cats/*.jpg."
        )
    if len(classes) == 1:
        raise DatasetError(
            f"'{data_dir / reference_split}' has one class folder ('{classes[0]}'); a "
            "classifier needs at least two. Put each class's images in their own folder, "
            f"e.g. {data_dir / reference_split}/{classes[0]}/ and "
            f"{data_dir / reference_split}/other/."
        )
    for split, found in class_sets.items():
        if found != classes:
            raise DatasetError(
                f"class folders differ between splits: '{data_dir / reference_split}' has "
                f"{classes} but '{data_dir / split}' has {found}. Every split needs the "
                "same class folders (missing: "
                f"{sorted(set(classes) - set(found))}, extra: {sorted(set(found) - set(classes))})."
            )
    images: dict[str, dict[str, list[str]]] = {}
    ignored: list[str] = []
    for split in splits:
        images[split] = {}
        for cls in classes:
            rel = f"{split}/{cls}"
            files = files_below(data_dir / rel)
            images_here = [is_image(f.rpartition("/")[2]) for f in files]
            kept = [f"{rel}/{f}" for f, keep in zip(files, images_here) if keep]
            ignored.extend(f"{rel}/{f}" for f, keep in zip(files, images_here) if not keep)
            undecodable = _undecodable(kept)
            if undecodable:
                raise DatasetError(
                    f"{len(undecodable)} file name(s) under '{data_dir / rel}' are not "
                    f"valid UTF-8 ({', '.join(undecodable[:5])}): rename them (e.g. with "
                    "`convmv -f latin1 -t utf-8`), so that manifests can record them."
                )
            if not kept:
                raise DatasetError(
                    f"class folder '{data_dir / rel}' has no images (looked for "
                    f"{', '.join(sorted(IMAGE_EXTENSIONS))}). Add images or remove the "
                    "folder from every split."
                )
            images[split][cls] = kept
    return Dataset(data_dir, classes, images, ignored)


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
