"""``audit/review.html``: the audit's suspects and duplicate pairs, to keep, relabel or exclude.

A static page (the template ``templates/review.html``) that works opened from disk
and copied elsewhere: each image is an embedded JPEG thumbnail, no file is
fetched. Its button downloads the corrections table tlflow.corrections reads,
with the earlier corrections (config 'corrections', embedded here) in it, so a
second round extends the first.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

from . import corrections
from .atomic import atomic_path
from .readers import read_table

TEMPLATE = Path(__file__).with_name("templates") / "review.html"
# Thumbnail side in pixels: about 5 KB a JPEG, so a page of 2,000 images is ~10 MB.
SIDE = 160
# At most this many suspects and pairs on the page (the CSVs list all): a reviewer
# works down from the most likely errors and the most alike pairs.
MOST = 1000


def thumbnail(path) -> str | None:
    """A small JPEG of the image as a data: URI; None when it cannot be read."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as image:
            small = ImageOps.exif_transpose(image).convert("RGB")
            small.thumbnail((SIDE, SIDE))
    except OSError:  # moved or broken since the features were made
        return None
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _script_json(value) -> str:
    """JSON safe inside a <script> element: no '<' can close it."""
    return json.dumps(value, ensure_ascii=False).replace("<", "\\u003c")


def review_page(
    suspects_csv,
    duplicates_csv,
    embedding_csv,
    data_dir,
    classes,
    out_html,
    title: str,
    corrections_csv=None,
    most: int = MOST,
) -> dict:
    """Write the page; returns how many suspects and pairs it shows, of how many."""
    import jinja2

    suspects = read_table(suspects_csv)
    pairs = read_table(duplicates_csv)
    class_of = dict(zip(*read_table(embedding_csv)[["file", "class"]].to_numpy().T))
    shown_suspects, shown_pairs = suspects.head(most), pairs.head(most)
    files = {*shown_suspects.file, *shown_pairs.file_a, *shown_pairs.file_b}
    thumbs = {file: thumbnail(Path(data_dir, file)) for file in sorted(files)}
    earlier = [list(row) for row in corrections.read(corrections_csv)] if corrections_csv else []
    environment = jinja2.Environment(autoescape=True, keep_trailing_newline=True)
    page = environment.from_string(TEMPLATE.read_text()).render(
        title=title,
        classes=list(classes),
        suspects=shown_suspects.to_dict("records"),
        pairs=[
            {**pair, "class_a": class_of.get(pair["file_a"], ""), "class_b": class_of.get(pair["file_b"], "")}
            for pair in shown_pairs.to_dict("records")
        ],
        counts={"suspects": len(suspects), "pairs": len(pairs)},
        corrections_csv=corrections_csv,
        data=_script_json({"classes": list(classes), "thumbs": thumbs, "earlier": earlier}),
    )
    with atomic_path(out_html) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return {
        "suspects": len(shown_suspects),
        "of_suspects": len(suspects),
        "pairs": len(shown_pairs),
        "of_pairs": len(pairs),
        "earlier": len(earlier),
    }
