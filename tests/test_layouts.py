"""The three layouts: split folders, one folder split by content hash, a label table."""

from __future__ import annotations

import hashlib
import math
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import job_stats, make_workdir, planned_jobs, snakemake, write_config
from tlflow import label_table, layouts
from tlflow.images import DatasetError
from tlflow.manifest import HashCache
from tlflow.synthetic import draw

SPLITS = ["train", "validation", "test"]


def _one_folder(root, counts: dict[str, int], seed=0):
    """``root/<class>/<class>_<i>.png``, every image different (PNG: lossless, no ties)."""
    rng = np.random.default_rng(seed)
    for cls, n in counts.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            draw("circle", 16, rng).save(root / cls / f"{cls}_{i:04d}.png")
    return root


def _where(dataset) -> dict[str, str]:
    return {
        f: split for split, by_class in dataset.images.items() for files in by_class.values() for f in files
    }


def _scan(root, tmp_path, **options):
    return layouts.scan(root, SPLITS, HashCache(tmp_path / "hashes.json"), **options)


def test_split_of_depends_on_the_hash_alone_and_fractions_move_only_to_and_from_train():
    digests = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(20_000)]
    shares = {"validation": 0.1, "test": 0.2}
    split = [layouts.split_of(d, shares) for d in digests]
    for name, share in shares.items():  # 3 standard deviations of a binomial
        assert abs(split.count(name) - share * len(digests)) < 3 * math.sqrt(
            len(digests) * share * (1 - share)
        )
    wider = [layouts.split_of(d, {"validation": 0.15, "test": 0.2}) for d in digests]
    moved = {(a, b) for a, b in zip(split, wider) if a != b}
    assert moved == {("train", "validation")}


def test_one_folder_is_split_the_same_way_every_time_and_stratified(tmp_path):
    root = _one_folder(tmp_path / "data", {"cats": 300, "dogs": 120})
    dataset = _scan(root, tmp_path)
    assert dataset.classes == ["cats", "dogs"] and dataset.ignored == []
    assert _where(dataset) == _where(_scan(root, tmp_path / "fresh"))  # no hash remembered
    for cls, n in (("cats", 300), ("dogs", 120)):
        for split in ("validation", "test"):
            got = len(dataset.images[split][cls])
            assert abs(got - 0.1 * n) <= 3 * math.sqrt(n * 0.1 * 0.9), (cls, split, got)
        assert sum(len(dataset.images[s][cls]) for s in SPLITS) == n


def test_adding_or_removing_images_moves_no_other_image(tmp_path):
    root = _one_folder(tmp_path / "data", {"cats": 100, "dogs": 100})
    before = _where(_scan(root, tmp_path))
    _one_folder(tmp_path / "more", {"cats": 10, "dogs": 10}, seed=1)
    for image in (tmp_path / "more").rglob("*.png"):
        shutil.move(image, root / image.parent.name / f"new_{image.name}")
    removed = sorted(before)[::7]
    for name in removed:
        (root / name).unlink()
    after = _where(_scan(root, tmp_path))
    assert len(after) == len(before) + 20 - len(removed)
    assert {f: s for f, s in after.items() if f in before} == {
        f: s for f, s in before.items() if f not in removed
    }


def test_exact_copies_share_a_split_even_with_other_labels(tmp_path):
    root = _one_folder(tmp_path / "data", {"cats": 40, "dogs": 40})
    for image in sorted((root / "cats").iterdir())[:20]:
        shutil.copy(image, root / "dogs" / f"copy_{image.name}")
    where = _where(_scan(root, tmp_path))
    copies = [
        (f"cats/{n.removeprefix('copy_')}", f"dogs/{n}")
        for n in (p.name for p in (root / "dogs").glob("copy_*"))
    ]
    assert len(copies) == 20 and all(where[a] == where[b] for a, b in copies)


def test_a_class_without_an_image_in_a_split_is_refused_and_a_small_one_warned(tmp_path):
    root = _one_folder(tmp_path / "data", {"cats": 200, "dogs": 2})
    with pytest.raises(DatasetError, match=r"without class 'dogs' \(2 images\).*raise the split's fraction"):
        _scan(root, tmp_path)
    root = _one_folder(tmp_path / "few", {"cats": 200, "dogs": 20})
    (warning,) = layouts.warnings(_scan(root, tmp_path))  # dogs: 6 validation, 1 test
    assert warning.startswith("few test images of class(es) 'dogs' (1)")


def test_fractions_must_name_the_splits_and_leave_train_images():
    assert layouts.fractions(["train", "validation"], None) == {"validation": 0.1}
    with pytest.raises(DatasetError, match="'test' has none"):
        layouts.fractions(SPLITS, {"validation": 0.2})
    with pytest.raises(DatasetError, match="'holdout' is not in 'splits'"):
        layouts.fractions(["train", "validation"], {"validation": 0.2, "holdout": 0.1})
    with pytest.raises(DatasetError, match="less than 1"):
        layouts.fractions(SPLITS, {"validation": 0.5, "test": 0.5})


def test_a_folder_mixing_split_and_class_folders_is_refused_with_the_fix(tmp_path):
    root = _one_folder(tmp_path / "data", {"cats": 3, "dogs": 3})
    _one_folder(root / "train", {"cats": 3, "dogs": 3})
    with pytest.raises(
        DatasetError,
        match=r"mixes split folders \(train/\) with class folders of images \(cats/, dogs/\).*train/cats/",
    ):
        _scan(root, tmp_path)


def _table(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_labels_come_from_the_table_with_its_splits_and_unlisted_images_are_named(tmp_path):
    root = _one_folder(tmp_path / "data", {"a": 30, "b": 30})
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*.png"))
    odd = 'b/odd, "name".png'  # any name the file system allows
    shutil.copy(root / files[-1], root / odd)
    rows = [f"{f},{'01' if i % 2 else 'NA'}," for i, f in enumerate(files[1:])]
    rows[0] += "test"  # a split named in the table
    quoted = odd.replace('"', '""')
    table = _table(tmp_path / "labels.csv", "file,label,split\n" + "\n".join(rows) + f'\n"{quoted}",NA,\n')
    dataset = _scan(root, tmp_path, labels=str(table))
    assert dataset.classes == ["01", "NA"]  # text, never numbers or missing
    assert _where(dataset)[files[1]] == "test" and odd in dataset.images[_where(dataset)[odd]]["NA"]
    assert dataset.ignored == [(files[0], label_table.NOT_LISTED)]


def test_table_columns_are_configurable_and_a_missing_one_is_named(tmp_path):
    root = _one_folder(tmp_path / "data", {"a": 30})
    table = _table(
        tmp_path / "t.csv", "image,kind\n" + "".join(f"a/a_{i:04d}.png,{i % 2}\n" for i in range(30))
    )
    dataset = _scan(root, tmp_path, labels=str(table), columns={"file": "image", "label": "kind"})
    assert dataset.classes == ["0", "1"]
    with pytest.raises(
        DatasetError,
        match=r"t.csv' has no column\(s\) \['file', 'label'\]; its columns are \['image', 'kind'\]",
    ):
        _scan(root, tmp_path, labels=str(table))


def test_every_bad_row_of_a_table_is_named_at_once(tmp_path):
    root = _one_folder(tmp_path / "data", {"a": 4})
    (root / "notes.txt").write_text("x")
    table = _table(
        tmp_path / "labels.csv",
        "file,label\na/a_0000.png,x\na/a_0001.png,\na/a_0000.png,y\na/gone.png,x\nnotes.txt,y\n../a.png,x\n",
    )
    with pytest.raises(DatasetError) as error:
        _scan(root, tmp_path, labels=str(table))
    message = str(error.value)
    assert "labels.csv" in message and "row(s) 2 have an empty label" in message
    assert "a/a_0000.png (rows 1, 3)" in message
    assert "a/gone.png" in message and "notes.txt (not an image file" in message
    assert "outside data_dir" in message and "../a.png" in message


@pytest.mark.workflow
def test_the_workflow_plans_one_folder_and_a_table_and_refuses_a_mixed_folder(tmp_path):
    workdir = make_workdir(tmp_path / "run", counts={"train": 60})
    data = workdir / "data"
    for folder in (data / "train").iterdir():
        folder.rename(data / folder.name)
    (data / "train").rmdir()
    planned = planned_jobs(workdir)
    assert planned["extract_shard"] == 3 * 2 and planned["train_head"] == 1  # 3 splits, 2 shards
    (data / "train/circles").mkdir(parents=True)
    shutil.copy(next((data / "circles").iterdir()), data / "train/circles/x.jpg")
    refused = snakemake(workdir, "--dry-run", check=False)
    assert refused.returncode != 0 and "mixes split folders (train/)" in refused.stdout + refused.stderr
    shutil.rmtree(data / "train")
    images = sorted(str(p.relative_to(data)) for p in data.rglob("*.jpg"))
    rows = "".join(f"{name},{name.split('/')[0]}\n" for name in images[1:])
    (workdir / "labels.csv").write_text("file,label\n" + rows)
    write_config(workdir, {**yaml.safe_load((workdir / "config.yaml").read_text()), "labels": "labels.csv"})
    result = snakemake(workdir, "--dry-run")
    assert job_stats(result.stdout)["extract_shard"] == 6
    assert "Ignoring 1 entries" in result.stdout + result.stderr
    assert (workdir / "logs/ignored_files.csv").read_text().splitlines()[
        1
    ] == f"data/{images[0]},{label_table.NOT_LISTED}"


@pytest.mark.workflow
def test_a_label_table_of_the_same_images_and_an_edited_label_plan_no_extraction(finished_copy):
    """Extraction reads (file, content hash) only: the classes join the rows where
    each split is joined, so neither the layout nor a label computes features."""
    workdir = finished_copy
    data = workdir / "data"
    images = sorted(str(p.relative_to(data)) for p in data.rglob("*.jpg"))
    table = {name: name.split("/")[1] for name in images}  # split/class/file, as the folders say
    write = lambda: (workdir / "labels.csv").write_text(  # noqa: E731
        "file,label,split\n" + "".join(f"{f},{c},{f.split('/')[0]}\n" for f, c in table.items())
    )
    write()
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    write_config(workdir, {**config, "labels": "labels.csv"})
    assert planned_jobs(workdir) == {}  # the same images and classes: nothing to do
    edited = next(f for f in images if f.startswith("train/circles/"))
    table[edited] = "squares"
    write()
    planned = planned_jobs(workdir)
    assert planned["join_split"] == 1 and planned["train_head"] == 1
    assert not [rule for rule in planned if rule.startswith("extract")], planned
    run = snakemake(workdir)
    assert not [rule for rule in job_stats(run.stdout + run.stderr) if rule.startswith("extract")]
    manifest = pd.read_csv(workdir / "results/vgg16/features/train_manifest.csv", dtype={"file": str})
    assert manifest.set_index("file").loc[edited, "class"] == "squares"
