"""Finding images, checking the layout, decoding every colour mode to RGB."""

import csv
import os
import socket
import subprocess

import numpy as np
import pytest
from conftest import REPO, SNAKEMAKE, job_stats, make_workdir
from PIL import Image

from tlflow import listing
from tlflow.images import DatasetError, class_folders, load_rgb, scan
from tlflow.manifest import HashCache, UnreadableError, label_rows, listings
from tlflow.synthetic import make_dataset


def test_scan_lists_images_by_split_and_class_and_ignores_the_rest(tmp_path):
    make_dataset(tmp_path, {"train": 3, "validation": 2}, classes=2)
    (tmp_path / "train/circles/.DS_Store").write_bytes(b"x")
    (tmp_path / "train/circles/readme.txt").write_text("notes")
    (tmp_path / "train/circles/nested").mkdir()
    (tmp_path / "train/circles/nested/CAPS.JPG").write_bytes(b"x")
    dataset = scan(tmp_path, ["train", "validation"])
    assert dataset.classes == ["circles", "squares"]
    assert dataset.count("train") == 3 + 4 + 1 and dataset.count("validation") == 2 + 3
    assert "train/circles/nested/CAPS.JPG" in dataset.images["train"]["circles"]
    assert dataset.ignored == [
        ("train/circles/.DS_Store", listing.HIDDEN),
        ("train/circles/readme.txt", listing.NOT_IMAGE),
    ]


def test_every_entry_under_data_dir_is_used_or_named_with_its_reason(tmp_path, monkeypatch):
    data = tmp_path / "data"
    make_dataset(data, {"train": 2, "validation": 2}, classes=2)
    circles = data / "train/circles"
    os.mkfifo(circles / "y.jpg")  # opened, it would block for ever
    monkeypatch.chdir(circles)  # a socket's path is limited to 108 bytes
    with socket.socket(socket.AF_UNIX) as server:
        server.bind("s.png")
    (circles / "gone.txt").symlink_to(tmp_path / "nowhere")
    (circles / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")  # kept: hashing names it
    (data / "train/stray.jpg").write_bytes(b"x")
    (data / "train/.ipynb_checkpoints").mkdir()
    (data / "test").mkdir()  # not in the config's splits
    (data / "notes.txt").write_text("x")
    dataset = scan(data, ["train", "validation"])
    assert "train/circles/gone.jpg" in dataset.images["train"]["circles"]
    assert dataset.ignored == [
        ("notes.txt", listing.NOT_A_SPLIT),
        ("test/", listing.NOT_A_SPLIT),
        ("train/.ipynb_checkpoints/", listing.HIDDEN),
        ("train/circles/gone.txt", listing.BROKEN_LINK),
        ("train/circles/s.png", f"{listing.NOT_REGULAR}: socket"),
        ("train/circles/y.jpg", f"{listing.NOT_REGULAR}: FIFO"),
        ("train/stray.jpg", listing.NOT_IN_CLASS),
    ]
    with pytest.raises(UnreadableError, match="train/circles/gone.jpg"):
        listings(dataset, 2, HashCache(tmp_path / "hashes.json"))


def test_folder_links_are_followed_and_a_loop_is_named(tmp_path):
    data = tmp_path / "data"
    make_dataset(data, {"train": 2, "validation": 2}, classes=2)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere/far.png").write_bytes(b"x")
    circles = data / "train/circles"
    (circles / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (circles / "nested").mkdir()
    (circles / "nested/up").symlink_to("..", target_is_directory=True)  # a loop
    (circles / "squares").symlink_to("../squares", target_is_directory=True)
    (circles / "all").symlink_to("../..", target_is_directory=True)  # data_dir itself
    dataset = scan(data, ["train", "validation"])
    assert "train/circles/linked/far.png" in dataset.images["train"]["circles"]
    assert dataset.count("train") == 2 + 3 + 1  # no image twice, none in two classes
    assert dataset.ignored == [
        ("train/circles/all/", f"{listing.LISTED_ALREADY}: {data}/"),
        ("train/circles/nested/up/", f"{listing.LISTED_ALREADY}: {data}/train/circles/"),
        ("train/circles/squares/", f"{listing.LISTED_ALREADY}: {data}/train/squares/"),
    ]


def test_a_folder_that_cannot_be_listed_is_named(tmp_path, monkeypatch):
    make_dataset(tmp_path, {"train": 2, "validation": 2}, classes=2)
    (tmp_path / "train/circles/locked").mkdir()
    scandir = os.scandir

    def no_permission(path):  # chmod 0 is no obstacle to root, who runs CI
        if os.fspath(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", path)
        return scandir(path)

    monkeypatch.setattr(os, "scandir", no_permission)
    with pytest.raises(DatasetError, match="cannot list the folder '.*locked' \\(Permission denied"):
        scan(tmp_path, ["train", "validation"])


def test_classes_match_between_splits_after_nfc_normalisation(tmp_path):
    nfc, nfd = "caf\u00e9", "cafe\u0301"
    for split, name in (("train", nfc), ("validation", nfd)):
        for cls in (name, "tea"):
            (tmp_path / split / cls).mkdir(parents=True)
            Image.new("RGB", (4, 4)).save(tmp_path / split / cls / "a.png")
    dataset = scan(tmp_path, ["train", "validation"])
    assert dataset.classes == [nfc, "tea"] == class_folders(tmp_path / "validation")
    assert dataset.images["validation"][nfc] == [f"validation/{nfd}/a.png"]  # as on disk
    rows = label_rows(dataset, "validation")
    assert [cls for _, cls, _ in rows] == [nfc, "tea"]
    assert all((tmp_path / file).is_file() for file, _, _ in rows)


def test_folders_that_differ_only_in_normalisation_are_refused_with_code_points(tmp_path):
    make_dataset(tmp_path, {"train": 2, "validation": 2}, classes=2)
    for name in ("caf\u00e9", "cafe\u0301"):
        (tmp_path / "train" / name).mkdir()
    with pytest.raises(DatasetError) as error:
        scan(tmp_path, ["train", "validation"])
    assert "(caf\\u00e9)" in str(error.value) and "(cafe\\u0301)" in str(error.value)
    assert "differ only in Unicode normalisation" in str(error.value)


def test_a_class_mismatch_shows_code_points_of_lookalike_names(tmp_path):
    make_dataset(tmp_path, {"train": 2, "validation": 2}, classes=2)
    (tmp_path / "validation/circles").rename(tmp_path / "validation/circles\u200b")
    with pytest.raises(DatasetError) as error:
        scan(tmp_path, ["train", "validation"])
    message = str(error.value)
    assert "missing: 'circles', extra: 'circles\u200b' (circles\\u200b)" in message


def test_hidden_class_folders_are_not_classes(tmp_path):
    make_dataset(tmp_path, {"train": 2, "validation": 2}, classes=2)
    (tmp_path / "train/.ipynb_checkpoints").mkdir()
    assert scan(tmp_path, ["train", "validation"]).classes == ["circles", "squares"]


@pytest.mark.parametrize(
    "mode, colour",
    [("L", 128), ("P", 3), ("RGBA", (10, 20, 30, 255)), ("CMYK", (0, 255, 255, 0)), ("I;16", 40000)],
)
def test_every_colour_mode_becomes_rgb(tmp_path, mode, colour):
    path = tmp_path / f"image.{'tiff' if mode in ('CMYK', 'I;16') else 'png'}"
    Image.new(mode, (20, 10), colour).save(path)
    array = load_rgb(path, (8, 6))
    assert array.shape == (8, 6, 3) and array.dtype == np.uint8


def test_transparent_pixels_become_white_not_black(tmp_path):
    path = tmp_path / "clear.png"
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(path)
    assert (load_rgb(path, (4, 4)) == 255).all()


def test_cmyk_colours_are_converted(tmp_path):
    path = tmp_path / "red.jpg"
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(path)  # pure red in CMYK
    red, green, blue = load_rgb(path, (8, 8)).reshape(-1, 3).mean(axis=0)
    assert red > 200 and green < 60 and blue < 60


def _photo(width, height):
    """A large smooth picture, left half dark and right half light, with a gradient."""
    ramp = np.linspace(0, 255, width)[None, :, None] * np.ones((height, 1, 3))
    ramp[:, : width // 2] *= 0.3
    return Image.fromarray(ramp.astype(np.uint8))


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
def test_a_large_jpeg_decoded_at_reduced_scale_matches_the_full_decode(tmp_path, mode):
    path = tmp_path / "big.jpg"
    _photo(1600, 1200).convert(mode).save(path, quality=95)
    with Image.open(path) as image:  # the full-size decode, without draft
        full = np.asarray(image.convert("RGB").resize((64, 48), Image.Resampling.BILINEAR))
    fast = load_rgb(path, (48, 64))
    assert fast.shape == (48, 64, 3)
    assert np.abs(fast.astype(int) - full).mean() < 2


def test_a_rotated_large_jpeg_is_still_upright_at_full_requested_size(tmp_path):
    path = tmp_path / "portrait.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: rotate 90 degrees clockwise to view
    _photo(1600, 400).save(path, exif=exif, quality=95)
    array = load_rgb(path, (200, 50)).astype(int)
    assert array.shape == (200, 50, 3)
    assert array[:20].mean() < array[-20:].mean() - 40  # the dark half is now on top


def test_broken_file_raises(tmp_path):
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(Exception):
        load_rgb(path, (8, 8))


def test_errors_name_the_folder_and_the_fix(tmp_path):
    with pytest.raises(DatasetError, match="does not exist.*Set 'data_dir'"):
        scan(tmp_path / "nowhere", ["train", "validation"])
    make_dataset(tmp_path, {"train": 2, "validation": 2}, classes=2)
    with pytest.raises(DatasetError, match="test.*not found"):
        scan(tmp_path, ["train", "validation", "test"])


def test_one_class_is_refused_before_anything_runs(tmp_path):
    make_dataset(tmp_path, {"train": 2, "validation": 2}, classes=1)
    with pytest.raises(DatasetError, match="one class folder \\('circles'\\).*at least two"):
        scan(tmp_path, ["train", "validation"])


@pytest.mark.workflow
def test_a_dry_run_lists_odd_entries_once_and_never_opens_a_fifo(tmp_path):
    workdir = make_workdir(tmp_path / "run")
    data = workdir / "data"
    nfc, nfd = "caf\u00e9", "cafe\u0301"
    for split, name in (("train", nfc), ("validation", nfd), ("test", nfd)):
        (data / split / "circles").rename(data / split / name)
    os.mkfifo(data / f"train/{nfc}/y.jpg")
    (data / "train/stray.png").write_bytes(b"x")
    command = [
        SNAKEMAKE,
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        "--dry-run",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert job_stats(result.stdout)["extract_shard"] == 6  # two shards of each split
    output = result.stdout + result.stderr
    assert "Ignoring 2 entries" in output and "1 not a regular file" in output
    listed = workdir / "logs/ignored_files.csv"
    assert f"Each with its reason: {listed.relative_to(workdir)}" in output
    with open(listed, newline="", encoding="utf-8") as handle:
        assert list(csv.DictReader(handle)) == [
            {"file": f"data/train/{nfc}/y.jpg", "reason": "not a regular file: FIFO"},
            {"file": "data/train/stray.png", "reason": "not in a class folder"},
        ]
    written = listed.stat().st_mtime_ns
    subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    assert listed.stat().st_mtime_ns == written  # rewritten only when it changes
