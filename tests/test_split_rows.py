"""A split's rows read in place from its shard files (tlflow.split_rows) and batched for the mlp."""

import numpy as np
import pandas as pd
import pytest
from tlflow import pooling, split_rows
from tlflow.readers import DamagedFileError


def _shards(folder, sizes, seed=0, shape=(2, 6)):
    """Shard files of ``sizes`` rows and a manifest that lists their rows interleaved:
    (manifest, shard files, the rows in the manifest's order)."""
    rng = np.random.default_rng(seed)
    files, rows, table = [], [], []
    for k, size in enumerate(sizes):
        data = rng.normal(size=(size, *shape)).astype(np.float32)
        path = folder / f"shard {k}.npy"  # a space, as any name may have
        np.save(path, data)
        files.append(path)
        table += [{"shard": str(path), "row": i} for i in range(size)]
        rows += list(data)
    order = rng.permutation(len(table))
    manifest = folder / "split_manifest.csv"
    pd.DataFrame([table[i] for i in order]).to_csv(manifest, index=False)
    return manifest, files, np.stack(rows)[order]


def test_rows_are_read_in_the_manifests_order(tmp_path):
    manifest, files, expected = _shards(tmp_path, [5, 7, 3])
    rows = split_rows.Rows([(manifest, files)])
    assert rows.shape == expected.shape and len(rows) == 15
    np.testing.assert_array_equal(rows.read(), expected)
    picked = [14, 0, 3, 3, 8]
    np.testing.assert_array_equal(rows.take(picked), expected[picked])
    np.testing.assert_array_equal(rows.subset(picked).read(), expected[picked])
    np.testing.assert_array_equal(rows[2:6, 1], expected[2:6, 1])
    # Small blocks: the same rows, block by block.
    blocks = list(rows.blocks(block_rows=4))
    assert [len(block) for _, block in blocks] == [4, 4, 4, 3]
    np.testing.assert_array_equal(np.concatenate([b for _, b in blocks]), expected)


def test_rows_pool_block_by_block_as_pooling_does(tmp_path, monkeypatch):
    manifest, files, expected = _shards(tmp_path, [9, 4], shape=(3, 3, 5))
    monkeypatch.setattr(split_rows, "BLOCK_BYTES", 3 * expected[0].nbytes)  # blocks of 3 rows
    rows = split_rows.Rows([(manifest, files)])
    for how in ("avg", "max", "flatten"):
        np.testing.assert_allclose(rows.pooled(how, "map"), pooling.pool(expected, how, "map"))


def test_sources_are_concatenated(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    first, second = _shards(tmp_path / "a", [4]), _shards(tmp_path / "b", [3, 2], seed=1)
    rows = split_rows.Rows([first[:2], second[:2]])
    np.testing.assert_array_equal(rows.read(), np.concatenate([first[2], second[2]]))


def test_a_shard_that_is_not_an_input_is_refused(tmp_path):
    manifest, files, _ = _shards(tmp_path, [3, 3])
    with pytest.raises(ValueError, match="not this job's inputs"):
        split_rows.Rows([(manifest, files[:1])])


def test_shards_of_another_shape_or_cut_short_are_named(tmp_path):
    manifest, files, _ = _shards(tmp_path, [3, 3])
    np.save(files[1], np.zeros((3, 2, 7), np.float32))
    with pytest.raises(DamagedFileError, match="shard 1.npy"):
        split_rows.Rows([(manifest, files)])
    np.save(files[1], np.zeros((3, 2, 6), np.float32))
    rows = split_rows.Rows([(manifest, files)])
    with open(files[1], "r+b") as handle:  # cut after opening: the read finds the end
        handle.truncate(handle.seek(0, 2) - 10)
    with pytest.raises(DamagedFileError, match="shard 1.npy"):
        rows.read()


def test_row_batches_cover_every_row_once_per_epoch(tmp_path):
    from tlflow.row_batches import RowBatches

    manifest, files, expected = _shards(tmp_path, [6, 5])
    labels = np.arange(len(expected))
    batches = RowBatches(split_rows.Rows([(manifest, files)]), labels, batch_size=4, seed=3, shuffle=True)
    epochs = []
    for _ in range(2):
        seen = [batches[i] for i in range(len(batches))]
        assert [len(y) for _, y in seen] == [4, 4, 3]  # the last batch smaller, not dropped
        order = np.concatenate([y for _, y in seen])
        assert sorted(order) == list(labels)
        for x, y in seen:
            np.testing.assert_array_equal(x, expected[y])
        epochs.append(order)
        batches.on_epoch_end()
    assert not np.array_equal(*epochs)  # reshuffled each epoch
    again = RowBatches(expected, labels, batch_size=4, seed=3, shuffle=True)
    np.testing.assert_array_equal(np.concatenate([again[i][1] for i in range(3)]), epochs[0])


def test_float16_views_are_read_as_float32_beside_their_originals(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    originals = _shards(tmp_path / "a", [4])
    views = _shards(tmp_path / "b", [3], seed=1)
    half = views[2].astype(np.float16)
    np.save(views[1][0], np.load(views[1][0]).astype(np.float16))
    rows = split_rows.Rows([originals[:2], views[:2]])
    assert rows.dtype == np.float32
    np.testing.assert_array_equal(rows.read(), np.concatenate([originals[2], half.astype(np.float32)]))
    np.testing.assert_array_equal(rows.take([5, 0]), np.stack([half[1].astype(np.float32), originals[2][0]]))


def test_a_joined_split_whose_files_disagree_is_refused_with_the_fix(tmp_path):
    from conftest import write_split

    rows = np.arange(12, dtype=np.float32).reshape(6, 2)
    manifest, shards, labels_npy = write_split(tmp_path, "test", rows, np.array([0, 0, 1, 1, 2, 2]))
    features, labels, table = split_rows.joined_split(shards, labels_npy, manifest)
    np.testing.assert_array_equal(features.read(), rows)
    assert labels.tolist() == table["label"].tolist()
    np.save(labels_npy, np.array([0, 0, 1, 1, 2, 0]))  # one label rewritten
    with pytest.raises(ValueError, match=r"differ from those in .*delete both and rerun"):
        split_rows.joined_split(shards, labels_npy, manifest)
    np.save(labels_npy, np.zeros(5, dtype=np.int64))  # a row short
    with pytest.raises(ValueError, match=r"hold 6 rows, .* 5 and .* 6: they were not written together"):
        split_rows.joined_split(shards, labels_npy, manifest)
