"""Finding images, checking the layout, decoding every colour mode to RGB."""

import numpy as np
import pytest
from PIL import Image

from tlflow.images import DatasetError, load_rgb, scan
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
    assert dataset.ignored == ["train/circles/.DS_Store", "train/circles/readme.txt"]


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
