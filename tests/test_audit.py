"""The data audit: suspected label errors, duplicates and leaks, the 2-D map.

Unit tests use synthetic feature arrays with planted errors and copies; the end-to-end
tests check the files of the shared run and a small run with an image copied from
train into test.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import (
    COUNTS,
    TINY_CONFIG,
    planned_jobs,
    snakemake,
    write_config,
    write_split,
)
from scipy.special import softmax
from tlflow import audit, audit_plots, neighbours, pooling
from tlflow.calibration import expected_calibration_error, fit_temperature, probabilities
from tlflow.synthetic import make_dataset

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CLASSES = ["a", "b", "c"]


def clustered(counts: dict, seed: int = 0, dims: int = 16):
    """Manifest-like table and pooled (n, 2, 2, dims) features, one tight cluster per class.

    Tight, so the probe is about equally sure of every clean image: a planted error,
    near 0 for its given class, then pulls that class's threshold below them all.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, (len(CLASSES), dims))
    rows, maps = [], []
    for split, per_class in counts.items():
        for label, cls in enumerate(CLASSES):
            for n in range(per_class):
                rows.append((f"{split}/{cls}/{n}.jpg", cls, label, f"{split}{cls}{n}", split))
                maps.append(centres[label] + rng.normal(0, 0.1, (2, 2, dims)))
    table = pd.DataFrame(rows, columns=["file", "class", "label", "sha256", "split"])
    return table, pooling.pool(np.stack(maps), "avg", "map")


def relabel(table, index, label):
    table.loc[index, "label"] = label
    table.loc[index, "class"] = CLASSES[label]


def test_planted_label_errors_are_ranked_first():
    table, features = clustered({"train": 40, "validation": 15, "test": 10})
    planted = {3: 1, 50: 2, 100: 0, 130: 2, 170: 1}  # rows of train, validation and test
    for index, label in planted.items():
        relabel(table, index, label)
    proba, folds, _ = audit.score_labels(table, features, len(CLASSES), folds=5)
    suspects = audit.suspects_table(table, proba, CLASSES)
    assert folds == 5
    assert set(suspects.file[: len(planted)]) == set(table.file[list(planted)])
    assert len(suspects) == len(planted)  # clean, well-separated images are not suspected
    # Files keep their original class folder: the probe finds it again.
    assert (suspects.likely_class == suspects.file.str.split("/").str[1]).all()
    assert (suspects.given_probability < 0.5).all()
    assert suspects.given_probability.is_monotonic_increasing
    assert {"train", "validation", "test"} == set(suspects.split)


def test_probes_fitted_on_a_subsample_score_every_image_out_of_fold(monkeypatch):
    table, features = clustered({"train": 60, "validation": 20, "test": 10})
    planted = {3: 1, 70: 2, 200: 0, 250: 0}  # train, train, validation, test
    for index, label in planted.items():
        relabel(table, index, label)
    fits = []
    fit_predict = audit._fit_predict

    def recorded(features, fit_rows, y_fit, score_rows, *args):
        fits.append((set(fit_rows.tolist()), set(score_rows.tolist()), np.bincount(y_fit, minlength=3)))
        return fit_predict(features, fit_rows, y_fit, score_rows, *args)

    monkeypatch.setattr(audit, "_fit_predict", recorded)
    proba, folds, _ = audit.score_labels(table, features, len(CLASSES), folds=5, fit_rows=50)
    assert folds == 5 and len(fits) == 6  # five folds, then the probe of the test split
    for fitted, scored, counts in fits:
        assert 45 <= len(fitted) <= 55 and (counts > 0).all()  # about 50, every class kept
        assert not fitted & scored  # never scored by a probe that saw it
    test = set(np.flatnonzero((table.split == "test").to_numpy()).tolist())
    assert not set().union(*(fitted for fitted, _, _ in fits)) & test
    assert set().union(*(scored for _, scored, _ in fits)) == set(range(len(table)))
    suspects = audit.suspects_table(table, proba, CLASSES)
    assert set(suspects.file[: len(planted)]) == set(table.file[list(planted)])


@pytest.mark.parametrize("one_thread_bytes, blas_threads", [(2**28, 1), (0, 2)])
def test_a_small_probe_fits_on_one_blas_thread_with_the_same_scores(
    monkeypatch, blas_threads_of_fits, one_thread_bytes, blas_threads
):
    """As the head's linear candidates (tlflow.blas): a probe below ONE_THREAD_BYTES
    fits on one BLAS thread, a larger one on the job's; the scores are the same bits."""
    from threadpoolctl import threadpool_limits
    from tlflow import blas

    table, features = clustered({"train": 40, "validation": 10})
    monkeypatch.setattr(blas, "ONE_THREAD_BYTES", one_thread_bytes)
    with threadpool_limits(2):  # the job's threads
        proba, _, _ = audit.score_labels(table, features, len(CLASSES), folds=3)
    assert blas_threads_of_fits and all(threads == {blas_threads} for threads in blas_threads_of_fits)
    monkeypatch.setattr(blas, "ONE_THREAD_BYTES", 0 if one_thread_bytes else 2**28)  # the other way
    with threadpool_limits(2):
        again, _, _ = audit.score_labels(table, features, len(CLASSES), folds=3)
    np.testing.assert_array_equal(proba, again)


def test_the_map_of_many_images_follows_its_sample(monkeypatch):
    _, features = clustered({"train": 200}, dims=32)
    whole = audit.project(features, "pca")
    monkeypatch.setattr(audit, "PROJECTION_SAMPLE", 150)
    sampled = audit.project(features, "pca")
    assert sampled.shape == whole.shape
    for axis in range(2):  # the same axes, up to their sign
        assert abs(np.corrcoef(whole[:, axis], sampled[:, axis])[0, 1]) > 0.99


def test_the_duplicates_of_vectors_scaled_in_place_are_the_same():
    vectors, planted = planted_copies(1000)
    table = pd.DataFrame({"file": [f"{n}.jpg" for n in range(1000)], "split": "train"})
    table["sha256"] = table.file
    copied = audit.duplicates_table(table, vectors.copy(), 0.9, ["train"], 5)
    scaled = vectors.copy()
    in_place = audit.duplicates_table(table, scaled, 0.9, ["train"], 5, in_place=True)
    pd.testing.assert_frame_equal(copied, in_place)
    assert len(copied) == len(planted)
    np.testing.assert_allclose(np.linalg.norm(scaled, axis=1), 1, rtol=1e-5)


def test_test_labels_and_features_never_shape_the_probe():
    table, features = clustered({"train": 20, "validation": 10, "test": 10})
    proba, _, fitted = audit.score_labels(table, features, len(CLASSES), folds=5)
    test = (table.split == "test").to_numpy()
    changed_table, changed_features = table.copy(), features.copy()
    changed_table.loc[test, "label"] = (changed_table.loc[test, "label"] + 1) % 3
    changed_features[test] += 100.0
    changed, _, _ = audit.score_labels(changed_table, features, len(CLASSES), folds=5)
    np.testing.assert_array_equal(changed, proba)  # test labels: no effect at all
    moved, _, _ = audit.score_labels(table, changed_features, len(CLASSES), folds=5)
    np.testing.assert_array_equal(moved[~test], proba[~test])  # test rows: not in any fit
    labels = table.label.to_numpy()
    alone = audit._fit_predict(
        features, np.flatnonzero(~test), labels[~test], np.flatnonzero(test), 3, seed=0
    )
    np.testing.assert_allclose(
        proba[test], probabilities(np.log(np.clip(alone, 1e-12, 1)), fitted["temperature"])
    )


def test_over_confident_probabilities_are_calibrated_on_a_known_case():
    """Labels drawn from known probabilities, shown 3 times as sure (logits x 3): one
    temperature fitted on them gives back the known probabilities, and their ECE."""
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 1.5, (4000, 3))
    true = softmax(logits, axis=1)
    labels = np.array([rng.choice(3, p=row) for row in true])
    sure = softmax(3 * logits, axis=1)
    known = np.arange(4000) < 2000  # fitted on these; scored on the others
    calibrated, temperature, noise = audit.calibrate(sure, labels, known)
    assert temperature == pytest.approx(3, rel=0.1) and noise < 0.02
    assert expected_calibration_error(sure[~known], labels[~known]) > 0.1
    assert expected_calibration_error(calibrated[~known], labels[~known]) < 0.03  # docs/audit-review.md
    assert np.abs(calibrated - true).max() < 0.06
    np.testing.assert_array_equal(calibrated.argmax(axis=1), sure.argmax(axis=1))


def test_the_temperature_is_not_softened_by_wrong_labels():
    """As above, with 10% of the labels then replaced by another class at random: the
    temperature fitted with a noise rate finds T and the rate, and its probabilities
    match the true classes; one fitted on the given labels alone is softened by them."""
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 3, (8000, 2))
    true_labels = np.array([rng.choice(2, p=row) for row in softmax(logits, axis=1)])
    sure = softmax(3 * logits, axis=1)
    wrong = rng.random(8000) < 0.1
    given = np.where(wrong, 1 - true_labels, true_labels)
    known = np.arange(8000) < 4000
    calibrated, temperature, noise = audit.calibrate(sure, given, known)
    assert temperature == pytest.approx(3, rel=0.15) and noise == pytest.approx(0.1, abs=0.03)
    softened = probabilities(np.log(sure), fit_temperature(np.log(sure[known]), given[known]))
    ece = {
        name: expected_calibration_error(p[~known], true_labels[~known])
        for name, p in (("noise", calibrated), ("given", softened))
    }
    assert ece["noise"] < 0.03 < ece["given"], ece


def test_tiny_classes_lower_the_folds_or_skip_the_label_audit(tmp_path):
    assert audit.probe_folds(np.array([0, 0, 1, 1, 1, 1]), 5) == 2
    assert audit.probe_folds(np.array([0, 1, 1, 1]), 5) == 0  # one image: cannot hold out
    assert audit.probe_folds(np.array([1, 1, 1]), 5) == 0  # one class: nothing to learn
    table, features = clustered({"train": 2, "validation": 1})
    proba, folds, _ = audit.score_labels(table, features, len(CLASSES), folds=5)
    assert folds == 3 and proba.shape == (9, 3)
    kept = table.drop(table.index[table["class"] == "c"][1:])  # class c: one image
    splits = {}
    for split in ("train", "validation"):
        rows = kept[kept.split == split]
        manifest, shards, labels = write_split(tmp_path, split, features[rows.index], rows.label.to_numpy())
        # The manifest as the join writes it: the split's rows and where each one is.
        where = pd.read_csv(manifest)[["shard", "row"]]
        rows.drop(columns="split").reset_index(drop=True).join(where).to_csv(manifest, index=False)
        splits[split] = (shards, labels, manifest)
    outputs = [tmp_path / name for name in ("s.csv", "d.csv", "e.csv", "a.json")]
    summary = audit.audit(splits, CLASSES, *outputs, folds=5, storage="map")
    assert summary["folds_used"] == 0 and summary["label_audit"].startswith("skipped")
    assert pd.read_csv(outputs[0]).columns.tolist() == audit.SUSPECT_COLUMNS
    assert json.loads(outputs[3].read_text())["images"] == {"train": 5, "validation": 2}


def test_mismatched_split_files_name_the_files_and_the_fix(tmp_path):
    manifest, shards, _ = write_split(tmp_path, "train", np.zeros((2, 4), np.float32), np.zeros(2, np.int64))
    np.save(tmp_path / "l.npy", np.zeros(3, np.int64))  # labels of another join
    with pytest.raises(
        ValueError,
        match=r"hold 2 rows, .*l\.npy 3 and .*train\.csv 2: they were not written together\. Delete them and rerun",
    ):
        audit.load_splits({"train": (shards, tmp_path / "l.npy", manifest)}, "map")


def test_pooled_rows_are_audited_by_their_average(tmp_path):
    maps = np.random.default_rng(0).normal(size=(4, 2, 2, 3)).astype(np.float32)
    manifest, shards, labels = write_split(tmp_path, "train", pooling.summarise(maps), np.zeros(4, np.int64))
    _, vectors = audit.load_splits({"train": (shards, labels, manifest)}, "pooled")
    np.testing.assert_allclose(vectors, pooling.pool(maps, "avg", "map"), rtol=1e-6)


def test_exact_and_near_copies_across_splits_are_found_and_distinct_images_are_not():
    rng = np.random.default_rng(1)
    files = [f"train/a/{n}.jpg" for n in range(6)] + [f"test/a/{n}.jpg" for n in range(4)]
    table = pd.DataFrame(
        {
            "file": files,
            "split": ["train"] * 6 + ["test"] * 4,
            "sha256": [f"h{n}" for n in range(10)],
        }
    )
    features = rng.normal(0, 1, (10, 64)).astype(np.float32)  # 64-d: cosines near 0
    table.loc[6, "sha256"] = table.sha256[3]  # test/a/0 is train/a/3, byte for byte
    features[6] = features[3]
    features[7] = features[5] + rng.normal(0, 1e-3, 64)  # test/a/1 is nearly train/a/5
    pairs = audit.duplicates_table(table, features, cutoff=0.9, split_order=["train", "test"], neighbours=5)
    found = pairs[["file_a", "file_b", "kind"]].values.tolist()
    assert sorted(found) == [
        ["train/a/3.jpg", "test/a/0.jpg", "exact"],
        ["train/a/5.jpg", "test/a/1.jpg", "near"],
    ]
    assert (pairs.split_a == "train").all() and (pairs.similarity > 0.99).all()
    assert audit.copies_in_train(pairs, "test") == 2


def test_same_hash_is_exact_even_when_features_differ():
    table = pd.DataFrame({"file": ["x", "y"], "split": ["train", "test"], "sha256": ["h", "h"]})
    pairs = audit.duplicates_table(table, np.eye(2), cutoff=0.9, split_order=["train", "test"], neighbours=5)
    assert pairs.kind.tolist() == ["exact"] and pairs.similarity[0] == 0


@pytest.mark.parametrize("block", [1, 3, 4, 64])
def test_blockwise_similarity_equals_brute_force(block):
    rng = np.random.default_rng(2)
    base = rng.normal(0, 1, (3, 8))
    features = base[rng.integers(0, 3, 11)] + rng.normal(0, 0.4, (11, 8))  # some close pairs
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    brute = unit @ unit.T
    np.fill_diagonal(brute, -np.inf)
    for per_image in (2, 10):
        # A pair is listed when one of the two is among the other's nearest above 0.8.
        nearest = np.argsort(-brute, axis=1)[:, :per_image]
        expected = {
            (min(a, b), max(a, b)): brute[a, b] for a in range(11) for b in nearest[a] if brute[a, b] >= 0.8
        }
        found_i, found_j, found_s = neighbours.similar_pairs(features, 0.8, per_image, "exact", block=block)
        found = dict(zip(zip(found_i.tolist(), found_j.tolist()), found_s))
        assert found.keys() == expected.keys()
        np.testing.assert_allclose([found[k] for k in expected], list(expected.values()), rtol=1e-5)
    all_close = np.triu(brute >= 0.8, 1).sum()
    assert len(neighbours.similar_pairs(features, 0.8, 2, block=block)[0]) < all_close  # bounded
    assert len(neighbours.similar_pairs(features, 0.8, 10, block=block)[0]) == all_close


def planted_copies(n: int, dims: int = 64, seed: int = 3):
    """Non-negative clustered vectors (unrelated cosines about 0.55, at most 0.87, like a
    backbone's) with 2% of them near copies of others (0.91 to 0.999); and those pairs."""
    rng = np.random.default_rng(seed)
    centres = np.abs(rng.normal(0, 1, dims)) + rng.normal(0, 0.8, (20, dims))
    vectors = np.maximum(centres[rng.integers(0, 20, n)] + rng.normal(0, 1.5, (n, dims)), 0)
    order = rng.permutation(n)
    originals, copies = order[: n // 50], order[n // 50 : n // 25]
    turn = rng.normal(0, 1, (len(copies), dims))
    turn *= np.linalg.norm(vectors[originals], axis=1, keepdims=True) / np.linalg.norm(
        turn, axis=1, keepdims=True
    )
    angle = np.arccos(rng.uniform(0.91, 0.999, len(copies)))[:, None]
    vectors[copies] = np.cos(angle) * vectors[originals] + np.sin(angle) * turn
    unit = neighbours.unit_rows(vectors)
    planted = {(min(a, b), max(a, b)) for a, b in zip(originals, copies) if unit[a] @ unit[b] >= 0.9}
    return vectors.astype(np.float32), planted


def pairs_of(found) -> dict:
    i, j, similarity = found
    return dict(zip(zip(i.tolist(), j.tolist()), similarity.tolist()))


def test_the_approximate_search_finds_the_planted_copies_the_exact_one_finds():
    vectors, planted = planted_copies(4000, dims=256)  # searched on 128 principal coordinates
    exact = pairs_of(neighbours.similar_pairs(vectors, 0.9, 5, "exact"))
    approximate = pairs_of(neighbours.similar_pairs(vectors, 0.9, 5, "approximate"))
    assert len(planted) > 60 and exact.keys() == planted  # unrelated images stay below 0.9
    assert approximate.keys() == exact.keys()
    # The index only proposes pairs: their similarities are computed exactly.
    np.testing.assert_allclose([approximate[k] for k in exact], list(exact.values()), rtol=1e-6)


def test_the_approximate_search_is_the_same_for_a_seed_whatever_the_threads():
    vectors, _ = planted_copies(3000)
    once = neighbours.approximate_neighbours(neighbours.unit_rows(vectors), 5, seed=1, threads=1)
    again = neighbours.approximate_neighbours(neighbours.unit_rows(vectors), 5, seed=1, threads=2)
    for first, second in zip(once, again):
        np.testing.assert_array_equal(first, second)
    assert (once[1] >= 0).all() and (once[1] != np.arange(3000)[:, None]).all()  # never itself


def test_candidates_dropped_by_their_projected_distance_are_below_the_cutoff():
    vectors, planted = planted_copies(3000, dims=256)  # above the 128 directions: projected
    unit = neighbours.unit_rows(vectors)
    every = neighbours.approximate_neighbours(unit, 5, seed=1)
    kept = neighbours.approximate_neighbours(unit, 5, seed=1, cutoff=0.9)
    above = every[0] >= 0.9
    assert above.sum() >= 2 * len(planted) and not (kept[0][~above] > -np.inf).any()
    np.testing.assert_array_equal(kept[0][above], every[0][above])
    np.testing.assert_array_equal(kept[1][above], every[1][above])


def test_the_search_setting_forces_each_path(monkeypatch, caplog):
    vectors, planted = planted_copies(500)
    monkeypatch.setattr(neighbours, "EXACT_UP_TO", 499)
    assert [neighbours.resolve(s, 499) for s in neighbours.SEARCHES] == ["exact", "exact", "approximate"]
    assert [neighbours.resolve(s, 500) for s in neighbours.SEARCHES] == [
        "approximate",
        "exact",
        "approximate",
    ]
    with pytest.raises(ValueError, match="search 'fast': use one of auto, exact, approximate"):
        neighbours.resolve("fast", 10)
    caplog.set_level("INFO", logger="tlflow.neighbours")
    for search in neighbours.SEARCHES:
        assert pairs_of(neighbours.similar_pairs(vectors, 0.9, 5, search)).keys() == planted
    ran = [r.getMessage().split(":")[1].split()[0] for r in caplog.records if "search of" in r.getMessage()]
    assert ran == ["approximate", "exact", "approximate"]
    table = pd.DataFrame({"file": ["x", "y"], "split": ["train", "test"], "sha256": ["h", "h"]})
    for search in ("exact", "approximate"):  # two images, one the other's copy: the same table
        pairs = audit.duplicates_table(table, np.ones((2, 4)), 0.9, ["train", "test"], 5, search)
        assert pairs[["file_a", "file_b", "kind"]].values.tolist() == [["x", "y", "exact"]]
        assert pairs.similarity[0] == pytest.approx(1)


def test_projection_is_two_dimensional_and_deterministic():
    _, features = clustered({"train": 10})
    for method in ("pca", "tsne"):
        xy = audit.project(features, method)
        assert xy.shape == (30, 2)
        np.testing.assert_array_equal(xy, audit.project(features, method))


def test_figures_draw_with_a_missing_image_and_without_pairs(tmp_path):
    make_dataset(tmp_path / "data", {"train": 1}, classes=2)
    suspects = pd.DataFrame(
        [
            ["train/circles/circle_00000.jpg", "train", "circles", "squares", 0.1, 0.9],
            ["train/gone.jpg", "train", "squares", "circles", 0.2, 0.8],
        ],
        columns=audit.SUSPECT_COLUMNS,
    )
    suspects.to_csv(tmp_path / "s.csv", index=False)
    data = tmp_path / "data"
    shown = audit_plots.plot_suspects(tmp_path / "s.csv", data, tmp_path / "s.png", "t", 16)
    within = pd.DataFrame(
        [["train/x.jpg", "train", "train/y.jpg", "train", 0.95, "near"]],
        columns=["file_a", "split_a", "file_b", "split_b", "similarity", "kind"],
    )
    within.to_csv(tmp_path / "d.csv", index=False)
    pairs = audit_plots.plot_pairs(tmp_path / "d.csv", data, tmp_path / "p.png", "t", 8)
    assert (shown, pairs) == (2, 0)  # a within-split pair is not a leak
    for name in ("s.png", "p.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_SIGNATURE


# --- end to end


@pytest.mark.workflow
def test_the_default_run_writes_the_audit(finished_run):
    out = finished_run / "results/vgg16/audit"
    summary = json.loads((out / "audit.json").read_text())
    sizes = {split: sum(count + i for i in range(3)) for split, count in COUNTS.items()}
    assert summary["images"] == sizes and summary["folds_used"] == 5
    assert summary["near_duplicate_search"] == "exact"  # auto, at this size
    assert set(summary["suspects"]) == set(COUNTS) and set(summary["copies_in_train"]) == {
        "validation",
        "test",
    }
    suspects = pd.read_csv(out / "label_suspects.csv")
    assert suspects.columns.tolist() == audit.SUSPECT_COLUMNS
    assert suspects.given_probability.between(0, 1).all()
    assert (suspects.given_class != suspects.likely_class).all()
    pairs = pd.read_csv(out / "duplicates.csv")
    assert pairs.columns.tolist() == [
        "file_a",
        "split_a",
        "file_b",
        "split_b",
        "similarity",
        "kind",
    ]
    assert (pairs.similarity >= 0.9 - 1e-6).all() and set(pairs.kind) <= {"exact", "near"}
    assert summary["near_duplicate_pairs"] + summary["exact_duplicate_pairs"] == len(pairs)
    embedding = pd.read_csv(out / "embedding.csv")
    assert len(embedding) == sum(sizes.values()) and np.isfinite(embedding[["x", "y"]]).all().all()
    for name in ("label_suspects.png", "cross_split_pairs.png", "embedding.png"):
        assert (out / name).read_bytes()[:8] == PNG_SIGNATURE


@pytest.mark.workflow
def test_an_image_copied_from_train_into_test_is_an_exact_duplicate(tmp_path):
    workdir = tmp_path / "run"
    make_dataset(workdir / "data", {"train": 2, "validation": 1, "test": 1}, classes=2)
    shutil.copy(
        workdir / "data/train/squares/square_00001.jpg",
        workdir / "data/test/squares/copied.jpg",
    )
    config = {
        **TINY_CONFIG,
        "extraction": {"shards": 1, "batch_size": 8, "threads": 2},
        "audit": {"near_duplicate_search": "approximate"},  # the index, through the rule
    }
    write_config(workdir, config)
    snakemake(workdir, "results/vgg16/audit/audit.json")  # features and audit, no head
    pairs = pd.read_csv(workdir / "results/vgg16/audit/duplicates.csv")
    exact = pairs[pairs.kind == "exact"][["file_a", "split_a", "file_b", "split_b"]]
    assert exact.values.tolist() == [
        ["train/squares/square_00001.jpg", "train", "test/squares/copied.jpg", "test"]
    ]
    summary = json.loads((workdir / "results/vgg16/audit/audit.json").read_text())
    assert summary["copies_in_train"]["test"] >= 1 and summary["exact_duplicate_pairs"] == 1
    assert summary["near_duplicate_search"] == "approximate"
    assert summary["folds_used"] == 3  # the smallest class has 2 + 1 images
    assert "3 folds, not 5" in (workdir / "logs/vgg16/audit.log").read_text()
    assert "plot_audit" in planned_jobs(workdir)  # the default target draws the audit
    snakemake(workdir, "results/vgg16/evaluation/summary.html")
    page = (workdir / "results/vgg16/evaluation/summary.html").read_text()
    copies = summary["copies_in_train"]["test"]
    assert f"{copies} test image(s) have an exact or near copy in train" in page
    write_config(workdir, {**config, "audit": {"enabled": False}})  # --config gives strings
    off = planned_jobs(workdir)
    assert "plot_audit" not in off and "review_page" not in off and "deploy_model" in off


def test_summary_warns_only_of_splits_with_copies_in_train(tmp_path):
    from tlflow.summary import leak_warnings

    (tmp_path / "audit.json").write_text(json.dumps({"copies_in_train": {"validation": 0, "test": 2}}))
    (warning,) = leak_warnings(tmp_path / "audit.json")
    assert warning.startswith("2 test image(s) have an exact or near copy in train")
    assert leak_warnings(None) == []  # audit switched off: nothing to warn of
