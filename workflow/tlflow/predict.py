"""Class probabilities for a folder of new images, from a deployed ``model.keras`` or ``model.onnx``.

    python -m tlflow.predict results/vgg16/model.keras photos/ out.csv
    python -m tlflow.predict results/vgg16/export/model.onnx photos/ out.csv

``model.onnx`` runs on ONNX Runtime and never imports TensorFlow or Keras (so this
module imports neither at import time). Reads the class names from ``model.json``
beside the model, and of a multi-label model each label's threshold: its rows
name the labels at or above their thresholds (``predicted_labels``). Every image file below
the folder gets a row; one that cannot be decoded gets its error instead of
probabilities, and the others are still predicted.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from . import multilabel
from .atomic import atomic_path
from .features import DECODE_AHEAD
from .images import decode_all
from .listing import ListingError, images_below
from .metadata import Meta, model_meta_path
from .probabilities import probability_columns
from .progress import Progress
from .readers import DamagedFileError, load_model

log = logging.getLogger(__name__)


class PredictError(ValueError):
    """The model or the folder cannot be used; the message says how to fix it."""


def list_images(folder) -> tuple[list[str], list[tuple[str, str]]]:
    """Image files below ``folder``, relative to it, sorted, and the other entries with
    the reason; raise PredictError if there is no image."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PredictError(
            f"image folder '{folder}' does not exist. Give the folder of the images to "
            "predict (config 'predict: images:', or the command line)."
        )
    try:
        found, ignored = images_below(folder)
    except ListingError as error:
        raise PredictError(str(error)) from None
    if not found:
        raise PredictError(f"no image files below '{folder}'. Add images there, or point to another folder.")
    return found, ignored


def read_meta(model_path) -> Meta:
    path = model_meta_path(model_path)
    if not path.is_file():
        raise PredictError(
            f"'{path}' not found: the class names of {model_path} are kept there. The "
            "workflow writes it beside model.keras and its exports; copy both files together."
        )
    try:
        return Meta.read(path)
    except DamagedFileError as error:
        raise PredictError(str(error)) from None


def load(model_path, threads: int):
    """``model(images)``: class probabilities (float64) of a batch of RGB pixels."""
    if Path(model_path).suffix == ".onnx":
        from .onnx_model import OnnxModel

        return OnnxModel(model_path, threads)
    from .runtime import configure_threads

    configure_threads(threads)
    model = load_model(model_path)
    return lambda images: np.asarray(model.predict_on_batch(images), np.float64)


def predict(model_path, folder, out_csv, batch_size: int = 32, threads: int = 1, files=None) -> dict:
    """Write one row per image below ``folder``: file, predicted class, probabilities, error.

    ``files`` (relative to ``folder``) are the images to read, when already listed
    (the workflow's manifest); otherwise the folder is walked.
    """
    meta = read_meta(model_path)  # a bad path fails here, before TensorFlow starts
    classes = meta.classes
    decided = _decision(meta)
    files = list_images(folder)[0] if files is None else files
    # Decode and resize exactly as the features were made (PIL bilinear); the model's
    # own resize then leaves the images unchanged, so predictions match training.
    size = tuple(meta.backbone.image_size)
    chunks = [files[start : start + batch_size] for start in range(0, len(files), batch_size)]
    progress = Progress(len(files), log)
    rows = []
    with ThreadPoolExecutor(max_workers=1) as pool:
        # Decoding runs ahead of the model, from before TensorFlow starts (seconds).
        ahead = deque(
            pool.submit(decode_all, [Path(folder, n) for n in chunk], size)
            for chunk in chunks[: max(2, DECODE_AHEAD // batch_size)]
        )
        model = load(model_path, threads)
        for number, chunk in enumerate(chunks):
            array, good, failed = ahead.popleft().result()
            if number + len(ahead) + 1 < len(chunks):
                following = chunks[number + len(ahead) + 1]
                ahead.append(pool.submit(decode_all, [Path(folder, n) for n in following], size))
            errors = {chunk[i]: message for i, message in failed}
            proba = model(array) if good else []
            by_file = dict(zip((chunk[i] for i in good), proba))
            for name in chunk:
                if name in by_file:
                    p = by_file[name]
                    rows.append([name, decided(p), *p, ""])
                else:
                    rows.append([name, "", *[""] * len(classes), errors[name]])
            progress.update(len(chunk))
    with atomic_path(out_csv) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        predicted = "predicted_labels" if meta.multi_label else "predicted_class"
        writer.writerow(["file", predicted, *probability_columns(classes), "error"])
        writer.writerows(rows)
    failed = sum(1 for row in rows if row[-1])
    if failed:
        log.warning("%d of %d images could not be decoded; see the error column", failed, len(rows))
    return {"images": len(rows), "predicted": len(rows) - failed, "unreadable": failed}


def _decision(meta: Meta):
    """An image's probabilities -> its cell: the most probable class, or the labels at
    or above their thresholds (multi-label)."""
    classes = meta.classes
    if not meta.multi_label:
        return lambda p: classes[int(np.argmax(p))]
    thresholds, separator = meta.head["thresholds"], meta.multi_label["separator"]
    return lambda p: multilabel.join(
        multilabel.names_of(multilabel.decide(p, thresholds), classes), separator
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "model",
        help="model.keras or export/model.onnx written by the workflow (model.json beside it)",
    )
    parser.add_argument("folder", help="folder of images; sub-folders are included")
    parser.add_argument("out_csv", help="predictions table to write")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        counts = predict(args.model, args.folder, args.out_csv, args.batch_size, args.threads)
    except (PredictError, DamagedFileError) as error:
        parser.exit(2, f"error: {error}\n")
    print(f"wrote {args.out_csv}: {counts}")


if __name__ == "__main__":
    main()
