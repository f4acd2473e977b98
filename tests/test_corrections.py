"""Corrections as data (config 'corrections'): relabel and exclude without touching a file."""

from __future__ import annotations

import os

import pytest
from tlflow import corrections, layouts
from tlflow.images import DatasetError
from tlflow.manifest import HashCache
from tlflow.synthetic import make_dataset

SPLITS = ["train", "validation", "test"]


def _table(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def _state(root):
    """Every image's (path, size, mtime, ctime, inode): what moving or touching changes."""
    return sorted(
        (str(p), p.stat().st_size, p.stat().st_mtime_ns, p.stat().st_ctime_ns, p.stat().st_ino)
        for p in root.rglob("*.jpg")
    )


def test_relabel_and_exclude_change_the_listing_and_touch_no_file(tmp_path):
    root = tmp_path / "data"
    make_dataset(root, {"train": 4, "validation": 2, "test": 2}, classes=2, size=16)
    before = _state(root)
    table = _table(
        tmp_path / "fixes.csv",
        "file,action,class\n"
        "train/circles/circle_00000.jpg,relabel,squares\n"
        "validation/squares/square_00001.jpg,exclude,\n"
        "train/squares/square_00000.jpg,relabel,squares\n",  # its own class: no change
    )
    plain = layouts.scan(root, SPLITS, HashCache(tmp_path / "h.json"))
    fixed = layouts.scan(root, SPLITS, HashCache(tmp_path / "h.json"), corrections=str(table))
    assert fixed.corrected == {"relabelled": 1, "excluded": 1} and plain.corrected == {}
    assert "train/circles/circle_00000.jpg" not in fixed.images["train"]["circles"]
    assert "train/circles/circle_00000.jpg" in fixed.images["train"]["squares"]
    assert fixed.images["train"]["squares"] == sorted(fixed.images["train"]["squares"])
    assert "validation/squares/square_00001.jpg" not in fixed.images["validation"]["squares"]
    assert ("validation/squares/square_00001.jpg", f"excluded by {table}") in fixed.ignored
    assert sum(map(fixed.count, SPLITS)) == sum(map(plain.count, SPLITS)) - 1
    assert fixed.images["test"] == plain.images["test"]
    assert _state(root) == before


def test_every_bad_row_is_named_at_once_with_the_fix(tmp_path):
    root = tmp_path / "data"
    make_dataset(root, {"train": 3, "validation": 2, "test": 2}, classes=2, size=16)
    (root / "train" / "notes.txt").write_text("not an image")
    table = _table(
        tmp_path / "fixes.csv",
        "file,action,class\n"
        "train/circles/nope.jpg,exclude,\n"
        "train/circles/circle_00000.jpg,relabel,triangles\n"
        "train/circles/circle_00001.jpg,rename,squares\n"
        "train/circles/circle_00002.jpg,relabel,\n"
        "train/squares/square_00000.jpg,exclude,\n"
        "train/squares/square_00000.jpg,exclude,\n"
        "train/notes.txt,exclude,\n",
    )
    with pytest.raises(DatasetError) as error:
        layouts.scan(root, SPLITS, HashCache(tmp_path / "h.json"), corrections=str(table))
    message = str(error.value)
    for part in (
        f"corrections table '{table}'",
        "2 file(s) are not images of the data set",
        "train/circles/nope.jpg",
        "train/notes.txt (",
        "class the data set does not have (its classes: circles, squares): triangles (row 2)",
        "row(s) 4 relabel without a class",
        "row(s) 3 have an action that is not relabel or exclude",
        "train/squares/square_00000.jpg (rows 5, 6)",
        "nothing was run",
    ):
        assert part in message, (part, message)
    with pytest.raises(DatasetError, match="has no column.*'action'"):
        corrections.read(_table(tmp_path / "bad.csv", "file,class\na.jpg,cats\n"))
    with pytest.raises(DatasetError, match="does not exist: set 'corrections'"):
        corrections.read(tmp_path / "missing.csv")


def test_names_match_after_nfc_and_a_class_may_not_leave_a_split(tmp_path):
    root = tmp_path / "data"
    make_dataset(root, {"train": 2, "validation": 1, "test": 1}, classes=2, size=16)
    odd = root / "train" / "circles" / 'caf\u00e9, "x".jpg'
    os.rename(root / "train" / "circles" / "circle_00000.jpg", odd)
    decomposed = 'train/circles/cafe\u0301, ""x"".jpg'
    table = _table(tmp_path / "fixes.csv", f'file,action,class\n"{decomposed}",relabel,squares\n')
    fixed = layouts.scan(root, SPLITS, HashCache(tmp_path / "h.json"), corrections=str(table))
    assert 'train/circles/caf\u00e9, "x".jpg' in fixed.images["train"]["squares"]
    only = _table(tmp_path / "only.csv", "file,action,class\nvalidation/circles/circle_00000.jpg,exclude,\n")
    with pytest.raises(DatasetError, match="leaves 'validation' without an image of class 'circles'"):
        layouts.scan(root, SPLITS, HashCache(tmp_path / "h.json"), corrections=str(only))
