"""Fine-tuning: only the named layers train, BatchNorm stays in inference mode, every
image each epoch, every output written, a killed run resumes to the same model, and
with fine-tuning off nothing changes."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, SNAKEMAKE, TINY_CONFIG, make_workdir, planned_jobs, run, snakemake, write_config

from tlflow.synthetic import make_dataset

RESULTS = "results/vgg16"
# unfreeze left at its default, so the default is run on the default backbone (VGG16).
FINE_TUNE = {
    "enabled": True,
    "epochs": 3,
    "patience": 2,
    "batch_size": 8,
    "learning_rate": 1e-4,
    "threads": 2,
}
CONFIG = {
    **TINY_CONFIG,
    "on_bad_image": "skip",
    "audit": {"enabled": False},
    "fine_tune": FINE_TUNE,
    "predict": {"images": "new", "model": "fine_tuned"},
}


def _tiny_backbone():
    """conv -> BN -> conv -> BN, named in two blocks, as keras.applications names them."""
    import keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="block1_conv")(inputs)
    x = keras.layers.BatchNormalization(name="block1_bn")(x)
    x = keras.layers.Conv2D(4, 3, name="block2_conv")(x)
    x = keras.layers.BatchNormalization(name="block2_bn")(x)
    x = keras.layers.GlobalAveragePooling2D(name="block2_pool")(x)
    return keras.Model(inputs, x, name="tiny")


def test_unfreeze_trains_only_the_named_layers_and_batchnorm_stays_in_inference_mode():
    import keras

    from tlflow.fine_tune import FineTuneError, unfreeze

    keras.utils.set_random_seed(0)
    backbone = _tiny_backbone()
    assert unfreeze(backbone, "block2") == ["block2_conv"]
    assert unfreeze(backbone, 1) == ["block2_conv"]  # BN and pooling are not counted
    assert unfreeze(backbone, 2) == ["block1_conv", "block2_conv"]
    assert {w.path.split("/")[0] for w in backbone.trainable_weights} == {"block1_conv", "block2_conv"}
    with pytest.raises(FineTuneError, match="block1, block2"):
        unfreeze(backbone, "block9")
    with pytest.raises(FineTuneError, match="at most 2"):
        unfreeze(backbone, 3)

    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Dense(1)(backbone(inputs, training=False)))
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss="mse")
    before = {w.path: w.numpy() for w in backbone.weights}
    rng = np.random.default_rng(0)
    model.fit(rng.normal(5, 3, (16, 8, 8, 3)), rng.normal(size=(16, 1)), epochs=2, verbose=0)
    changed = {w.path for w in backbone.weights if not np.array_equal(w.numpy(), before[w.path])}
    # Convolutions learn; BatchNorm keeps its scale, offset and its moving statistics.
    assert changed == {"block1_conv/kernel", "block1_conv/bias", "block2_conv/kernel", "block2_conv/bias"}


def test_two_class_model_gives_both_columns_and_its_logits(tmp_path):
    import keras

    from tlflow import backbones, head, pooling
    from tlflow.backbones import resolve
    from tlflow.fine_tune import build, set_temperature
    from tlflow.metadata import Meta
    from tlflow.probabilities import logits

    spec = resolve({"name": "vgg16", "weights": "none"}, [64, 64], "float32")
    assert spec["features"] == "pooled"  # the head reads (average, maximum) rows
    head.assemble([2, 512], 2, "max", temperature=2.0, storage="pooled").save(tmp_path / "head.h5")
    meta = Meta.from_dict({"classes": ["a", "b"], "backbone": spec})
    model, backbone = build(tmp_path / "head.h5", meta, "float32")
    images = np.random.default_rng(0).uniform(0, 255, (3, 64, 64, 3)).astype(np.float32)
    z = logits(model, images)  # before the temperature
    # The model pools the backbone's 2x2 maps as extraction stores them.
    maps = backbone.predict(backbones.preprocess_function("vgg16")(images.copy()), verbose=0)
    rows = pooling.summarise(maps)
    assert maps.shape == (3, 2, 2, 512) and not np.allclose(rows[:, 0], rows[:, 1])
    stored = logits(keras.models.load_model(tmp_path / "head.h5", compile=False), rows)
    np.testing.assert_allclose(z, stored, rtol=1e-4, atol=1e-4)
    set_temperature(model, 4.0)
    model.save(tmp_path / "model.keras")
    proba = keras.models.load_model(tmp_path / "model.keras").predict(images, verbose=0)
    assert np.allclose(proba[:, 1], 1 / (1 + np.exp(-z[:, 0] / 4.0)), atol=1e-5)
    assert np.allclose(proba.sum(axis=1), 1, atol=1e-6)


def test_every_image_once_per_epoch_in_an_order_fixed_by_seed_and_epoch(tmp_path):
    from tlflow.image_batches import ImageBatches, UnreadableImageError

    make_dataset(tmp_path, {"train": 12}, classes=2, size=16)
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.jpg"))[:11]
    labels = np.arange(len(files)) % 2
    transforms = {"flip": True, "zoom": 0.2, "rotation": 10, "brightness": 0.2, "contrast": 0.2}

    def epoch(number, seed=1):
        batches = ImageBatches(
            tmp_path, files, labels, (16, 16), 4, seed=seed, shuffle=True, transforms=transforms
        )
        batches.epoch = number
        return [batches[i] for i in range(len(batches))], batches.order()

    first, order = epoch(0)
    assert [len(y) for _, y in first] == [4, 4, 3]  # the last batch smaller, not dropped
    assert sorted(order) == list(range(len(files)))
    assert np.array_equal(np.concatenate([y for _, y in first]), labels[order])
    again, _ = epoch(0)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(first, again))  # same seed, epoch: same views
    assert not np.array_equal(epoch(1)[1], order) and not np.array_equal(epoch(0, seed=2)[1], order)

    (tmp_path / files[3]).write_bytes(b"not a jpeg")
    batches = ImageBatches(tmp_path, files, labels, (16, 16), 4)
    with pytest.raises(UnreadableImageError, match=files[3]):
        batches[0]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """One run with fine-tuning on (3 epochs), a bad training image skipped, predictions
    made with the fine-tuned model."""
    workdir = make_workdir(tmp_path_factory.mktemp("fine_tune") / "run", CONFIG)
    (workdir / "data/train/circles/broken.jpg").write_bytes(b"not a jpeg")
    make_dataset(workdir / "new", {"x": 4}, classes=3, size=40)  # other size: resized inside
    snakemake(workdir)
    return workdir


@pytest.mark.workflow
def test_fine_tuning_writes_every_output_beside_the_frozen_model(tuned):
    out = tuned / RESULTS / "fine_tuned"
    for name in (
        "model.keras",
        "model.json",
        "history.csv",
        "plots/loss.png",
        "plots/accuracy.png",
        "evaluation/metrics.json",
        "evaluation/predictions.csv",
        "evaluation/confusion_matrix.png",
        "evaluation/mistakes.png",
        "evaluation/reliability.png",
    ):
        assert (out / name).stat().st_size > 0, name
    assert not (out / ".checkpoint").exists()  # removed once the outputs are written
    meta = json.loads((out / "model.json").read_text())["head"]
    history = pd.read_csv(out / "history.csv")
    assert list(history["epoch"]) == list(range(1, meta["fine_tune"]["epochs_run"] + 1))
    # The default (3 layers with weights from the top) is VGG16's block 5.
    assert meta["fine_tune"]["trained_layers"] == ["block5_conv1", "block5_conv2", "block5_conv3"]
    assert meta["fine_tune"]["best_epoch"] == int(history["val_loss"].idxmin()) + 1
    metrics = json.loads((out / "evaluation/metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["calibration"]["temperature"] == meta["temperature"]
    # Trained on the kept training images: the unreadable one left out, as in extraction.
    kept = len(pd.read_csv(tuned / RESULTS / "features/train_manifest.csv"))
    assert f"{kept} training and" in (tuned / "logs/vgg16/fine_tune.log").read_text()
    summary = (tuned / RESULTS / "evaluation/summary.html").read_text()
    assert "Fine-tuned" in summary and f"{metrics['accuracy']:.4f}" in summary


@pytest.mark.workflow
def test_the_fine_tuned_plots_are_the_frozen_plot_rules_on_the_fine_tuned_files(tuned):
    # plot_fine_tuned_* are `use rule ... with:` of plot_curves and plot_evaluation.
    lines = snakemake(tuned, "--detailed-summary").stdout.splitlines()
    header = lines.index(next(line for line in lines if line.startswith("output_file\t")))
    table = pd.read_csv(io.StringIO("\n".join(lines[header:])), sep="\t").set_index("output_file")
    evaluation = ["predictions.csv", "confusion_matrix.csv", "reliability.csv"]
    expected = {  # rule: (folder of its figures, figures, its inputs)
        "plot_curves": ("plots", ["loss", "accuracy"], ["head/history.csv", "head/head.json"]),
        "plot_fine_tuned_curves": (
            "fine_tuned/plots",
            ["loss", "accuracy"],
            ["fine_tuned/history.csv", "fine_tuned/model.json"],
        ),
        "plot_evaluation": (
            "evaluation",
            ["confusion_matrix", "mistakes", "reliability"],
            [f"evaluation/{name}" for name in evaluation],
        ),
        "plot_fine_tuned_evaluation": (
            "fine_tuned/evaluation",
            ["confusion_matrix", "mistakes", "reliability"],
            [f"fine_tuned/evaluation/{name}" for name in evaluation],
        ),
    }
    for rule, (folder, figures, inputs) in expected.items():
        for figure in figures:
            row = table.loc[f"{RESULTS}/{folder}/{figure}.png"]
            assert (row["rule"], row["log-file(s)"], row["plan"]) == (
                rule,
                f"logs/vgg16/{rule}.log",
                "no update",
            )
            assert set(row["input-file(s)"].split(",")) == {f"{RESULTS}/{path}" for path in inputs}


@pytest.mark.workflow
def test_report_shows_the_fine_tuned_model_beside_the_frozen_one(tuned, tmp_path):
    out = tmp_path / "report.html"
    snakemake(tuned, "--report", str(out))
    page = out.read_text()
    assert "vgg16 fine-tuned" in page and "Fine-tuning per epoch" in page
    embedded = {
        base64.b64decode(m) for m in re.findall(r"filename=mistakes.png;base64,([A-Za-z0-9+/=]+)", page)
    }
    assert embedded == {
        (tuned / RESULTS / p / "mistakes.png").read_bytes() for p in ("evaluation", "fine_tuned/evaluation")
    }


@pytest.mark.workflow
def test_fine_tuned_model_loads_plainly_and_predicts_raw_images(tuned):
    import keras

    from tlflow.images import load_rgb

    model = keras.models.load_model(
        tuned / RESULTS / "fine_tuned/model.keras"
    )  # safe mode, no custom objects
    expected = pd.read_csv(tuned / RESULTS / "fine_tuned/evaluation/predictions.csv")
    images = np.stack([load_rgb(tuned / "data" / f, (32, 32)) for f in expected["file"]])
    columns = [c for c in expected.columns if c.startswith("prob_")]
    assert np.allclose(model.predict(images, verbose=0), expected[columns], atol=1e-5)
    # Raw images of another size: resized inside.
    raw = np.stack([load_rgb(path, (40, 40)) for path in sorted((tuned / "new").rglob("*.jpg"))[:2]])
    proba = model.predict(raw, verbose=0)
    assert proba.shape == (2, 3) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    # 'predict: model: fine_tuned': the predict rule used it (decoding as training did).
    predicted = pd.read_csv(tuned / RESULTS / "predictions/predictions.csv")
    images = np.stack([load_rgb(tuned / "new" / f, (32, 32)) for f in predicted["file"]])
    assert np.allclose(model.predict(images, verbose=0), predicted[columns], atol=1e-5)


@pytest.fixture
def tuned_copy(tuned, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(tuned, copy, symlinks=True, copy_function=shutil.copy2)
    return copy


@pytest.mark.workflow
@pytest.mark.parametrize("key, value", [("threads", 1), ("mem_mb", 999), ("runtime", 5), ("gpus", 1)])
def test_a_changed_resource_plans_no_job(tuned_copy, key, value):
    config = json.loads(json.dumps(CONFIG))
    config["fine_tune"][key] = value
    write_config(tuned_copy, config)
    assert planned_jobs(tuned_copy) == {}


@pytest.mark.workflow
def test_fine_tuning_off_plans_no_job_and_changes_no_output(finished_copy):
    """A run made without fine-tuning: its section, switched off, adds and reruns nothing."""
    write_config(finished_copy, {**TINY_CONFIG, "fine_tune": {**FINE_TUNE, "enabled": False}})
    assert planned_jobs(finished_copy) == {}
    assert not (finished_copy / RESULTS / "fine_tuned").exists()


@pytest.mark.workflow
def test_switching_fine_tuning_off_only_redraws_the_summary(tuned_copy):
    write_config(tuned_copy, {**CONFIG, "fine_tune": {**FINE_TUNE, "enabled": False}, "predict": {}})
    assert planned_jobs(tuned_copy) == {"summarise_run": 1}


@pytest.mark.workflow
def test_killed_fine_tuning_resumes_to_the_model_of_an_uninterrupted_run(tuned, tuned_copy):
    import keras

    out = tuned_copy / RESULTS / "fine_tuned"
    (out / "model.keras").unlink()
    command = [
        SNAKEMAKE,
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(tuned_copy),
        "--configfile",
        str(tuned_copy / "config.yaml"),
        "--cores",
        "2",
        f"{RESULTS}/fine_tuned/model.keras",
    ]
    process = subprocess.Popen(
        command, cwd=tuned_copy, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    while not list(out.glob(".checkpoint/[!.]*.npz")):
        assert process.poll() is None, "the run ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint was written"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # mid-training, as a SLURM time limit or power cut
    process.wait()
    (checkpoint,) = out.glob(".checkpoint/[!.]*.npz")
    with np.load(checkpoint) as saved:
        done = json.loads(str(saved["state"]))["epoch"]
    assert 1 <= done < FINE_TUNE["epochs"] and not (out / "model.keras").exists()

    # The killed run's locks stay; the command the next run names removes them.
    stopped = snakemake(tuned_copy, check=False)
    unlock = shlex.split(re.search(r"remove them with `([^`]+)`", stopped.stdout + stopped.stderr)[1])
    run([SNAKEMAKE, *unlock[1:]], tuned_copy)
    snakemake(tuned_copy)
    log = (tuned_copy / "logs/vgg16/fine_tune.log").read_text()
    assert f"after epoch {done}" in log
    uninterrupted = tuned / RESULTS / "fine_tuned"
    resumed, expected = (
        keras.models.load_model(d / "model.keras").get_weights() for d in (out, uninterrupted)
    )
    assert len(resumed) == len(expected) and all(np.array_equal(a, b) for a, b in zip(resumed, expected))
    assert (out / "history.csv").read_text() == (uninterrupted / "history.csv").read_text()
