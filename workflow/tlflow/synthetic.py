"""Generated image folders for the demo, the tests and the benchmarks.

Each class is a shape (circle, square, triangle, ...) in its own colour family, at a
random size and place on a noisy grey background. Colour is what even a randomly
initialised backbone passes on, so the demo's head can learn from random features;
the shape is there for real backbones. Class sizes differ on purpose: uneven counts that
are not multiples of a batch size catch dropped or misaligned rows.

    python -m tlflow.synthetic OUT_DIR [--size 64] [--train 40] [--classes 3]

``many_classes`` makes up to hundreds of classes (each shape in many hues), for
the workflow at many classes; ``multi_label`` (``--multi-label``) one folder of
images with one to three shapes each and a label table naming them, for
multi-label runs (docs/multilabel.md).
"""

from __future__ import annotations

import argparse
import colorsys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "cross", "ring")
COLOURS = ((200, 60, 50), (60, 170, 60), (60, 90, 210), (210, 180, 40), (160, 60, 190))


def draw(shape: str, size: int, rng: np.random.Generator, colour=None) -> Image.Image:
    """``shape`` on noise, in its own colour family or around the RGB ``colour``."""
    background = rng.integers(60, 200)
    noise = rng.normal(0, 20, (size, size, 3))
    pixels = np.clip(background + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    pen = ImageDraw.Draw(image)
    base = np.array(COLOURS[SHAPES.index(shape)] if colour is None else colour)
    colour = tuple(int(c) for c in np.clip(base + rng.integers(-40, 40, 3), 0, 255))
    radius = rng.uniform(0.2, 0.35) * size
    cx, cy = rng.uniform(radius, size - radius, 2)
    _paint(pen, shape, cx, cy, radius, colour)
    return image


def _paint(pen, shape: str, cx: float, cy: float, radius: float, colour) -> None:
    """``shape`` of ``radius`` around (cx, cy)."""
    box = (cx - radius, cy - radius, cx + radius, cy + radius)
    if shape == "circle":
        pen.ellipse(box, fill=colour)
    elif shape == "square":
        pen.rectangle(box, fill=colour)
    elif shape == "triangle":
        pen.polygon([(cx, cy - radius), (cx - radius, cy + radius), (cx + radius, cy + radius)], fill=colour)
    elif shape == "cross":
        width = max(2, int(radius / 3))
        pen.line([(box[0], cy), (box[2], cy)], fill=colour, width=width)
        pen.line([(cx, box[1]), (cx, box[3])], fill=colour, width=width)
    else:
        pen.ellipse(box, outline=colour, width=max(2, int(radius / 4)))


def multi_label(root, counts: dict[str, int], labels: int = 3, size: int = 32, seed: int = 0) -> Path:
    """Write ``root/images/<split>-<n>.jpg``, each with one to three of the first
    ``labels`` shapes (each in its colour family, in its own quarter of the image),
    and ``root/labels.csv`` (file, label: its labels joined by "|", split). Returns its path.
    """
    rng = np.random.default_rng(seed)
    folder = Path(root, "images")
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["file,label,split"]
    for split, count in counts.items():
        for n in range(count):
            shapes = sorted(
                rng.choice(SHAPES[:labels], size=rng.integers(1, min(3, labels) + 1), replace=False)
            )
            pixels = np.clip(rng.integers(60, 200) + rng.normal(0, 20, (size, size, 3)), 0, 255)
            image = Image.fromarray(pixels.astype(np.uint8))
            pen = ImageDraw.Draw(image)
            for quarter, shape in zip(rng.permutation(4), shapes):
                base = np.array(COLOURS[SHAPES.index(shape)]) + rng.integers(-40, 40, 3)
                row, col = divmod(int(quarter), 2)
                _paint(
                    pen,
                    shape,
                    (col + 0.5) * size / 2,
                    (row + 0.5) * size / 2,
                    size * rng.uniform(0.12, 0.2),
                    tuple(int(c) for c in np.clip(base, 0, 255)),
                )
            name = f"images/{split}-{n:05d}.jpg"
            image.save(Path(root, name), quality=90)
            rows.append(f"{name},{'|'.join(shapes)},{split}")
    table = Path(root, "labels.csv")
    table.write_text("\n".join(rows) + "\n")
    return table


def make_dataset(
    root,
    counts: dict[str, int] | None = None,
    classes: int = 3,
    size: int = 32,
    seed: int = 0,
) -> dict[str, dict[str, int]]:
    """Write ``root/<split>/<class>/<n>.jpg``; class i of a split gets count + i images.

    Returns the number of images written per split and class.
    """
    counts = counts or {"train": 13, "validation": 7, "test": 5}
    rng = np.random.default_rng(seed)
    written: dict[str, dict[str, int]] = {}
    for split, count in counts.items():
        written[split] = {}
        for index, shape in enumerate(SHAPES[:classes]):
            folder = Path(root, split, f"{shape}s")
            folder.mkdir(parents=True, exist_ok=True)
            for n in range(count + index):
                draw(shape, size, rng).save(folder / f"{shape}_{n:05d}.jpg", quality=90)
            written[split][f"{shape}s"] = count + index
    return written


def many_classes(root, classes: int, counts: dict[str, int], size: int = 32, seed: int = 0) -> list[str]:
    """Write ``root/<split>/<shape>s-<hue>/<n>.jpg`` for ``classes`` classes: class i is
    shape i mod 5 in hue i // 5 of classes / 5 hues around the colour wheel, so
    neighbouring hues of one shape are the hard pairs. Class i of a split gets
    count + i mod 3 images. Returns the class names.
    """
    rng = np.random.default_rng(seed)
    hues = -(-classes // len(SHAPES))
    names = []
    for i in range(classes):
        shape, hue = SHAPES[i % len(SHAPES)], i // len(SHAPES)
        colour = tuple(int(255 * c) for c in colorsys.hsv_to_rgb(hue / hues, 0.8, 0.85))
        names.append(f"{shape}s-{hue:02d}")
        for split, count in counts.items():
            folder = Path(root, split, names[-1])
            folder.mkdir(parents=True, exist_ok=True)
            for n in range(count + i % 3):
                draw(shape, size, rng, colour).save(folder / f"{n:05d}.jpg", quality=90)
    return names


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--train", type=int, default=40, help="training images per class")
    parser.add_argument("--classes", type=int, default=3, choices=range(2, len(SHAPES) + 1))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--multi-label",
        action="store_true",
        help="one to three shapes per image, labels in OUT_DIR/labels.csv",
    )
    args = parser.parse_args(argv)
    counts = {"train": args.train, "validation": max(2, args.train // 4), "test": max(2, args.train // 4)}
    if args.multi_label:
        counts = {split: count * args.classes for split, count in counts.items()}
        table = multi_label(args.out_dir, counts, args.classes, args.size, args.seed)
        print(f"wrote {sum(counts.values())} images to {args.out_dir}/images and their labels to {table}")
        return
    written = make_dataset(args.out_dir, counts, args.classes, args.size, args.seed)
    total = sum(sum(by_class.values()) for by_class in written.values())
    print(f"wrote {total} images to {args.out_dir}: {written}")


if __name__ == "__main__":
    main()
