"""Shard extraction keeps every image in order, reports bad files, reuses its cache."""

import numpy as np
import pandas as pd
import pytest
from tlflow import split_rows
from tlflow.backbones import resolve
from tlflow.features import BadImagesError, cache_folder, extract_shard, join_split
from tlflow.images import scan
from tlflow.manifest import LABEL_FIELDS, HashCache, label_rows, manifest_text, shard_rows
from tlflow.synthetic import make_dataset

SPEC = resolve({"name": "vgg16", "weights": "none"}, [32, 32], "float32")


def _shard(tmp_path, counts=None, shards=1, k=0, split="train"):
    data = tmp_path / "data"
    if not data.exists():
        make_dataset(data, counts or {"train": 4, "validation": 2}, classes=2)
    dataset = scan(data, ["train", "validation"])
    rows = shard_rows(dataset, split, shards, k, HashCache(tmp_path / "hashes.json"))
    manifest = tmp_path / f"{split}-{k}.csv"
    manifest.write_text(manifest_text(rows))
    return data, manifest, rows


def _labels(tmp_path, split="train"):
    """The labels listing of ``split`` of the data set in ``tmp_path/data``."""
    listing = tmp_path / f"{split}-labels.csv"
    rows = label_rows(scan(tmp_path / "data", ["train", "validation"]), split)
    listing.write_text(manifest_text([dict(zip(LABEL_FIELDS, row)) for row in rows], LABEL_FIELDS))
    return listing


def _extract(tmp_path, manifest, data, name="out", **options):
    outputs = [tmp_path / f"{name}.npy", tmp_path / f"{name}.csv", tmp_path / f"{name}.skipped.csv"]
    counts = extract_shard(manifest, data, SPEC, *outputs, tmp_path / "cache", **options)
    return counts, outputs


def test_every_image_is_kept_when_the_last_batch_is_partial(tmp_path):
    data, manifest, rows = _shard(tmp_path)  # 4 + 5 = 9 images
    counts, (features, out_manifest, _) = _extract(tmp_path, manifest, data, batch_size=4)
    assert counts == {"images": 9, "computed": 9, "skipped": 0}
    array = np.load(features)
    assert array.shape == (9, 2, 512)  # stored pooled: average and maximum of 1x1x512
    assert pd.read_csv(out_manifest)["file"].tolist() == [row["file"] for row in rows]
    # the padded last batch gives the same rows as batches of one
    _, (single, _, _) = _extract(tmp_path, manifest, data, name="one", batch_size=1)
    np.testing.assert_allclose(np.load(single), array, rtol=1e-4, atol=1e-5)


def test_pooled_rows_are_the_average_and_maximum_of_the_map(tmp_path):
    """VGG16 at 64x64 gives a 2x2x512 map; stored pooled, each row is its average and
    its maximum over the 4 positions. The storage keys the cache: nothing is reused."""
    data, manifest, _ = _shard(tmp_path)
    stored = {}
    for storage in ("pooled", "map"):
        spec = resolve({"name": "vgg16", "weights": "none"}, [64, 64], "float32", features=storage)
        outputs = [tmp_path / f"{storage}{suffix}" for suffix in (".npy", ".csv", ".skipped.csv")]
        counts = extract_shard(manifest, data, spec, *outputs, tmp_path / "cache", batch_size=4)
        assert counts == {"images": 9, "computed": 9, "skipped": 0}
        stored[storage] = np.load(outputs[0])
    maps, pooled = stored["map"], stored["pooled"]
    assert maps.shape == (9, 2, 2, 512) and pooled.shape == (9, 2, 512) and pooled.dtype == np.float32
    np.testing.assert_allclose(pooled[:, 0], maps.mean(axis=(1, 2)), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(pooled[:, 1], maps.max(axis=(1, 2)), rtol=1e-6, atol=1e-7)
    assert not np.allclose(pooled[:, 0], pooled[:, 1])  # a real map: average is not maximum


def test_cached_rows_are_reused_and_only_new_images_computed(tmp_path):
    data, manifest, _ = _shard(tmp_path)
    _, (first, _, _) = _extract(tmp_path, manifest, data)
    (data / "train/circles/circle_00000.jpg").rename(data / "train/circles/renamed.jpg")
    make_dataset(tmp_path / "more", {"train": 1}, classes=1, seed=7)
    (tmp_path / "more/train/circles/circle_00000.jpg").rename(data / "train/circles/added.jpg")
    data, manifest, rows = _shard(tmp_path)
    counts, (second, out_manifest, _) = _extract(tmp_path, manifest, data, name="again")
    assert counts == {"images": 10, "computed": 1, "skipped": 0}  # the renamed one is reused
    old = pd.read_csv(tmp_path / "out.csv").set_index("sha256")
    new = pd.read_csv(out_manifest)
    first_rows, second_rows = np.load(first), np.load(second)
    for i, digest in enumerate(new["sha256"]):
        if digest in old.index:
            np.testing.assert_array_equal(second_rows[i], first_rows[old.index.get_loc(digest)])


def test_bad_images_fail_listing_every_one_or_are_skipped(tmp_path):
    data = tmp_path / "data"
    make_dataset(data, {"train": 4, "validation": 2}, classes=2)
    for name in ("circles/zz_bad.jpg", "squares/zz_empty.jpg"):
        (data / "train" / name).write_bytes(b"")
    data, manifest, _ = _shard(tmp_path)
    with pytest.raises(BadImagesError, match=r"(?s)2 image\(s\).*zz_bad.jpg.*zz_empty.jpg.*skip"):
        _extract(tmp_path, manifest, data)
    assert not (tmp_path / "out.npy").exists()  # nothing that looks complete
    counts, (features, out_manifest, skipped) = _extract(tmp_path, manifest, data, on_bad_image="skip")
    assert counts["skipped"] == 2 and len(np.load(features)) == 9
    assert pd.read_csv(skipped)["file"].tolist() == ["train/circles/zz_bad.jpg", "train/squares/zz_empty.jpg"]
    assert "zz_bad.jpg" not in pd.read_csv(out_manifest)["file"].str.cat()


def test_rows_computed_before_a_failure_are_kept_for_the_next_run(tmp_path):
    data = tmp_path / "data"
    make_dataset(data, {"train": 4, "validation": 2}, classes=2)
    (data / "train/circles/zz_bad.jpg").write_bytes(b"")
    data, manifest, _ = _shard(tmp_path)
    with pytest.raises(BadImagesError):
        _extract(tmp_path, manifest, data, batch_size=4)
    (data / "train/circles/zz_bad.jpg").unlink()  # the user fixes the data
    data, manifest, _ = _shard(tmp_path)
    counts, (features, _, _) = _extract(tmp_path, manifest, data)
    assert counts == {"images": 9, "computed": 0, "skipped": 0}
    assert np.load(features).shape == (9, 2, 512)
    # The failed attempt's parts stay until the split is joined: then only the
    # shard's own entry (a hard link of its output) is left.
    join_split(
        [(features, tmp_path / "out.csv", tmp_path / "out.skipped.csv")],
        _labels(tmp_path),
        *_joined(tmp_path / "joined"),
        cache_dir=cache_folder(tmp_path / "cache", SPEC),
    )
    (entry,) = (tmp_path / "cache").glob("*/*.npy")
    assert entry.samefile(features) and len(list(entry.parent.iterdir())) == 2


def _extract_shards(tmp_path, counts, shards):
    """Every shard of ``train`` extracted: their (features, manifest, skipped) files."""
    make_dataset(tmp_path / "data", counts, classes=2)
    shard_outputs = []
    for k in range(shards):
        data, manifest, _ = _shard(tmp_path, shards=shards, k=k)
        _, outputs = _extract(tmp_path, manifest, data, name=f"shard-{k}")
        shard_outputs.append(tuple(outputs))
    return shard_outputs


def _joined(folder):
    return [folder / n for n in ("labels.npy", "manifest.csv", "skipped.csv")]


def test_join_orders_rows_by_class_then_file_whatever_the_shards(tmp_path):
    shard_outputs = _extract_shards(tmp_path, {"train": 5, "validation": 2}, 3)
    joined = _joined(tmp_path)
    assert join_split(shard_outputs, _labels(tmp_path), *joined)["rows"] == 11
    manifest = pd.read_csv(joined[1])
    assert manifest["file"].tolist() == sorted(manifest["file"], key=lambda f: (f.split("/")[1], f))
    assert np.load(joined[0]).tolist() == manifest["label"].tolist() == [0] * 5 + [1] * 6
    by_file = {}
    for features, shard_manifest, _ in shard_outputs:
        for row, vector in zip(pd.read_csv(shard_manifest)["file"], np.load(features)):
            by_file[row] = vector
    # No copy of the rows: the manifest points into the shards' own files.
    rows = split_rows.Rows([(joined[1], [features for features, _, _ in shard_outputs])]).read()
    np.testing.assert_array_equal(rows, np.stack([by_file[f] for f in manifest["file"]]))


def test_a_bad_image_does_not_change_the_other_rows_by_a_bit(tmp_path):
    """A shard resumed after a broken image was fixed reuses rows from the failed
    attempt: they must equal a clean run's, so every image keeps its batch slot."""
    runs = {}
    for name in ("clean", "broken"):
        make_dataset(tmp_path / name / "data", {"train": 20, "validation": 2}, classes=2)
        if name == "broken":
            (tmp_path / name / "data/train/circles/circle_00000.jpg").write_bytes(b"")
        data, manifest, _ = _shard(tmp_path / name)
        _, (features, out_manifest, _) = _extract(
            tmp_path / name, manifest, data, batch_size=32, on_bad_image="skip"
        )
        runs[name] = pd.read_csv(out_manifest)["file"].tolist(), np.load(features)
    (clean_files, clean_rows), (files, rows) = runs["clean"], runs["broken"]
    assert clean_files[1:] == files  # only the broken image is missing
    np.testing.assert_array_equal(clean_rows[1:], rows)


def test_the_join_adds_classes_leaves_out_excluded_images_and_refuses_unknown_ones(tmp_path):
    """Shards hold (file, hash) rows; the labels listing says each image's class.
    An image the listing lacks was excluded; one the shards lack stops the join."""
    shard_outputs = _extract_shards(tmp_path, {"train": 4, "validation": 2}, 2)
    listing = pd.read_csv(_labels(tmp_path), dtype={"file": str, "class": str})
    excluded, relabelled = listing.file[0], listing.file[len(listing) - 1]
    edited = listing[listing.file != excluded].copy()
    edited.loc[edited.file == relabelled, ["class", "label"]] = [listing["class"][0], 0]
    edited.to_csv(tmp_path / "edited.csv", index=False)
    joined = _joined(tmp_path)
    counts = join_split(shard_outputs, tmp_path / "edited.csv", *joined, split="train")
    assert counts == {"rows": len(listing) - 1, "excluded": 1, "skipped": 0}
    manifest = pd.read_csv(joined[1], dtype={"file": str})
    assert excluded not in set(manifest.file)
    assert manifest.set_index("file").loc[relabelled, "label"] == 0
    assert np.load(joined[0]).tolist() == manifest["label"].tolist()
    assert manifest["label"].is_monotonic_increasing
    unknown = pd.concat([listing, listing.head(1).assign(file="train/circles/new.jpg")])
    unknown.to_csv(tmp_path / "unknown.csv", index=False)
    with pytest.raises(ValueError, match=r"hold no row of 1 image\(s\).*train/circles/new.jpg.*--forcerun"):
        join_split(shard_outputs, tmp_path / "unknown.csv", *_joined(tmp_path / "again"), split="train")
    assert not (tmp_path / "again").exists()
