"""Feature extraction: the tutorial's way (A) against the workflow's default (B).

Run from the repository root (benchmarks/README.md shows the output):

    .venv/bin/python benchmarks/extraction.py

On the same images, in one process, it times

  A. the tutorial's way in today's Keras: ``keras.utils.image_dataset_from_directory``
     (batch 32, float32) -> the backbone's ``preprocess_input`` -> ``model.predict``;
  B. the workflow's own extraction as the schema configures it by default
     (``tlflow.features.extract_shard``: PIL decode in threads one batch ahead,
     ``predict_on_batch``, rows streamed to a memory-mapped .npy);

and prints images/s, B/A, B's GFLOP/s against a large matrix product's GFLOP/s in
the same precision measured in the same run, the validation accuracy of the same
head (``tlflow.head.train``, default settings) trained on A's and on B's features,
and the peak RSS of B's extraction for N and 4N images (separate processes).

``--levers`` measures instead what each lever pays (precision, batch size, XLA,
threads, decode) with the variants interleaved in one process, medians of repeats.

Traps of the 2016 tutorial that A does *not* copy (each silently costs accuracy):
``rescale=1/255`` instead of the backbone's ``preprocess_input`` (with these VGG16
weights the features collapse to chance); ``steps = n // batch_size`` drops the last
partial batch, so features and labels no longer line up; labels written as
``[0] * n/2 + [1] * n/2`` assume equal, sorted classes; and
``image_dataset_from_directory`` shuffles by default (``shuffle=False`` here), which
scrambles the features against any labels built separately.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import yaml  # noqa: E402

MODELS = Path(os.environ.get("TLFLOW_MODELS", ROOT.parent / "shared" / "models"))
DATA = Path(os.environ.get("TLFLOW_DATA", ROOT.parent / "shared" / "data" / "catsdogs-dev"))
BACKBONES = {
    "vgg16": {"name": "vgg16", "weights": str(MODELS / "vgg16_hed_notop.weights.h5")},
    "efficientnet_lite0": {
        "name": str(MODELS / "efficientnet_lite0_notop.keras"),
        "id": "efficientnet_lite0",
        "preprocessing": "none",
    },
}


def schema_defaults() -> dict:
    """The ``extraction``, ``head`` and ``image_size`` defaults of the config schema."""
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    props = schema["properties"]

    def defaults(section):
        return {k: v["default"] for k, v in props[section]["properties"].items()}

    return {
        "extraction": defaults("extraction"),
        "head": defaults("head"),
        "image_size": props["image_size"]["default"],
    }


def default_threads(configured: int) -> int:
    """Snakemake gives a job min(threads, --cores); --cores defaults to the CPUs."""
    return max(1, min(configured, os.cpu_count() or 1))


def spec_of(backbone: str, precision: str) -> dict:
    from tlflow import backbones

    return backbones.resolve(BACKBONES[backbone], schema_defaults()["image_size"], precision)


# --------------------------------------------------------------------------- FLOPs


def count_flops(model, image_size) -> int:
    """FLOPs of one image (2 per multiply-add) in Conv2D, DepthwiseConv2D and Dense."""
    import keras

    if None in tuple(model.input_shape[1:3]):  # any-size input: fix it to get shapes
        fixed = keras.Input((*image_size, model.input_shape[-1]))
        model = keras.models.clone_model(model, input_tensors=fixed)
    total = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.Model):
            continue
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            h, w, c = layer.output.shape[1:]
            kh, kw = layer.kernel_size
            total += 2 * h * w * c * kh * kw
        elif isinstance(layer, keras.layers.Conv2D):
            h, w, c_out = layer.output.shape[1:]
            c_in = layer.input.shape[-1]
            kh, kw = layer.kernel_size
            total += 2 * h * w * c_out * kh * kw * c_in // layer.groups
        elif isinstance(layer, keras.layers.Dense):
            positions = int(np.prod(layer.output.shape[1:-1], dtype=np.int64))
            total += 2 * positions * layer.input.shape[-1] * layer.units
    return int(total)


def matmul_peak(dtype: str, n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of an n x n matrix product in ``dtype``: the best of ``repeats``, as
    others' jobs on the same cores can only slow it down."""
    import keras

    rng = np.random.default_rng(0)
    a = keras.ops.convert_to_tensor(rng.standard_normal((n, n), dtype=np.float32), dtype)
    b = keras.ops.convert_to_tensor(rng.standard_normal((n, n), dtype=np.float32), dtype)
    keras.ops.convert_to_numpy(keras.ops.matmul(a, b))  # warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        keras.ops.convert_to_numpy(keras.ops.matmul(a, b))
        times.append(time.perf_counter() - start)
    return 2 * n**3 / min(times) / 1e9


# --------------------------------------------------------------------------- A and B


def run_a(spec, splits):
    """The tutorial's way: image_dataset_from_directory -> preprocess -> model.predict."""
    import keras

    from tlflow import backbones

    assert spec["precision"] == "float32"
    start = time.perf_counter()  # the model build counts, as it does in B
    model = backbones.build(spec)
    preprocess = backbones.preprocess_function(spec["preprocessing"])
    out, seconds, count = {}, time.perf_counter() - start, 0
    for split in splits:
        start = time.perf_counter()
        dataset = keras.utils.image_dataset_from_directory(
            DATA / split,
            labels="inferred",
            label_mode="binary",
            batch_size=32,
            image_size=tuple(spec["image_size"]),
            shuffle=False,  # the default (True) scrambles features against labels
            verbose=False,
        )
        labels = np.concatenate([y for _, y in dataset]).ravel().astype(np.int64)
        images = dataset.map(lambda x, y: preprocess(x))
        features = model.predict(images, verbose=0)
        seconds += time.perf_counter() - start
        count += len(features)
        out[split] = (np.asarray(features, dtype=np.float32), labels)
    return out, count / seconds, model


def write_manifest(split_dir: Path, relroot: str, count: int | None, path: Path) -> int:
    """A shard manifest of the split's images, repeated cyclically to ``count`` rows."""
    from tlflow.manifest import file_sha256, manifest_text

    classes = sorted(d.name for d in split_dir.iterdir() if d.is_dir())
    rows = [
        {"file": f"{relroot}/{cls}/{f.name}", "class": cls, "label": label,
         "sha256": file_sha256(f)}
        for label, cls in enumerate(classes)
        for f in sorted((split_dir / cls).iterdir())
    ]  # fmt: skip
    if count:
        rows = (rows * -(-count // len(rows)))[:count]
    path.write_text(manifest_text(rows))
    return len(rows)


def run_b(spec, splits, batch_size, threads, workdir: Path):
    """The workflow's extraction (extract_shard): one shard of all splits, fresh cache."""
    from tlflow import features
    from tlflow.manifest import read_manifest

    manifest = workdir / "shard.csv"
    lines = []
    for split in splits:
        write_manifest(DATA / split, split, None, workdir / f"{split}.csv")
        lines += (workdir / f"{split}.csv").read_text().splitlines(keepends=True)[
            0 if not lines else 1 :
        ]
    manifest.write_text("".join(lines))
    start = time.perf_counter()
    features.extract_shard(
        manifest, DATA, spec, workdir / "f.npy", workdir / "kept.csv",
        workdir / "skipped.csv", workdir / "cache", batch_size=batch_size, threads=threads,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    x = np.load(workdir / "f.npy")
    rows = read_manifest(workdir / "kept.csv")
    out = {}
    for split in splits:
        mine = [i for i, row in enumerate(rows) if row["file"].startswith(f"{split}/")]
        out[split] = (x[mine], np.array([rows[i]["label"] for i in mine]))
    return out, len(rows) / seconds


def train_heads(feats, seeds: int):
    """Default heads trained on ``feats`` with ``seeds`` seeds: (models, final val accuracies)."""
    from tlflow import head

    settings = schema_defaults()["head"]
    (train_x, train_y), (val_x, val_y) = feats["train"], feats["validation"]
    models, accuracies = [], []
    for seed in range(settings["seed"], settings["seed"] + seeds):
        with contextlib.redirect_stdout(io.StringIO()):
            model, rows = head.train(train_x, train_y, val_x, val_y, 2, {**settings, "seed": seed})
        models.append(model)
        accuracies.append(rows[-1]["val_accuracy"])
    return models, accuracies


def accuracy(models, feats) -> float:
    """Mean validation accuracy of ``models`` on ``feats``."""
    from tlflow import probabilities

    val_x, val_y = feats["validation"]
    return float(np.mean([
        np.mean(probabilities.predict_proba(m, val_x).argmax(1) == val_y) for m in models
    ]))  # fmt: skip


def rss_child(backbone: str, count: int) -> None:
    """(In its own process) B on ``count`` train images (repeated); print peak RSS."""
    from tlflow import features

    d = schema_defaults()["extraction"]
    spec = spec_of(backbone, d["precision"])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        n = write_manifest(DATA / "train", "train", count, tmp / "m.csv")
        before = vm_hwm()
        features.extract_shard(
            tmp / "m.csv", DATA, spec, tmp / "f.npy", tmp / "k.csv", tmp / "s.csv",
            tmp / "cache", batch_size=d["batch_size"], threads=default_threads(d["threads"]),
        )  # fmt: skip
        peak = vm_hwm()
        row_mb = np.load(tmp / "f.npy", mmap_mode="r")[0].nbytes * n / 2**20
    print(f"RSS {n} {before / 1024:.0f} {peak / 1024:.0f} {row_mb:.1f}")


def vm_hwm() -> int:
    """Peak RSS of this process in KiB. (ru_maxrss would count the parent's peak too:
    Linux carries it over fork and exec.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def peak_rss(backbone: str, count: int):
    command = [sys.executable, __file__, "--rss-child", backbone, str(count)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    line = next(x for x in result.stdout.splitlines() if x.startswith("RSS "))
    n, before, peak, rows_mb = line.split()[1:]
    return int(n), float(before), float(peak), float(rows_mb)


# --------------------------------------------------------------------------- levers


def time_calls(variants: dict, repeats: int) -> dict:
    """Median seconds of each variant's call, the variants interleaved in every round."""
    for call in variants.values():
        call()  # warm up: tracing, compilation, oneDNN primitive caches
    times = {name: [] for name in variants}
    for _ in range(repeats):
        for name, call in variants.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def levers(backbone: str, repeats: int) -> None:
    import keras

    from tlflow import backbones, features

    size = tuple(schema_defaults()["image_size"])
    rng = np.random.default_rng(0)
    f32 = backbones.build(spec_of(backbone, "float32"))
    bf16 = backbones.build(spec_of(backbone, "bfloat16"))
    jit = backbones.build(spec_of(backbone, "float32"))
    jit.jit_compile = True
    flops = count_flops(f32, size)
    print(f"\n[{backbone} {size[0]}x{size[1]}: {flops / 1e9:.2f} GFLOP/image]")
    print(f"compute dtype: float32 model {f32.layers[-1].compute_dtype}, "
          f"bfloat16 model {bf16.layers[-1].compute_dtype}")  # fmt: skip
    variants, images = {}, {}
    for bs in (8, 16, 32, 64):
        x = (rng.random((bs, *size, 3), dtype=np.float32) * 255).astype(np.float32)
        images[f"float32 bs{bs}"] = bs
        variants[f"float32 bs{bs}"] = lambda x=x: f32.predict_on_batch(x)
        if bs == 32:
            images["bfloat16 bs32"] = images["float32 bs32 xla"] = bs
            variants["bfloat16 bs32"] = lambda x=x: bf16.predict_on_batch(x)
            variants["float32 bs32 xla"] = lambda x=x: jit.predict_on_batch(x)
    for name, seconds in time_calls(variants, repeats).items():
        rate = images[name] / seconds
        print(f"  {name:18s} {rate:7.2f} images/s {rate * flops / 1e9:7.1f} GFLOP/s")
    # Decoding alone (PIL + resize + preprocess), in threads as compute() does it.
    paths = sorted(DATA.glob("*/*/*.jpg"))
    preprocess = backbones.preprocess_function(spec_of(backbone, "float32")["preprocessing"])
    from concurrent.futures import ThreadPoolExecutor

    for threads in (1, 2):
        with ThreadPoolExecutor(threads) as pool:
            start = time.perf_counter()
            step = -(-len(paths) // threads)
            parts = [paths[i : i + step] for i in range(0, len(paths), step)]
            list(pool.map(lambda p: features._decode_batch(p, size, preprocess), parts))
            rate = len(paths) / (time.perf_counter() - start)
        print(f"  decode only, {threads} thread(s): {rate:7.1f} images/s")
    del keras


def threads_child(backbone: str, threads: int, count: int) -> None:
    """(In its own process) compute() throughput with ``threads``; TF fixes them at start."""
    from tlflow import features

    d = schema_defaults()["extraction"]
    paths = (sorted(DATA.glob("train/*/*.jpg")) * 8)[:count]
    spec = spec_of(backbone, d["precision"])
    done, start = 0, None
    for good, _, _ in features.compute(paths, spec, d["batch_size"], threads):
        if start is None:  # the clock starts after model build and first batch
            start = time.perf_counter()
        else:
            done += len(good)
    print(f"THREADS {threads} {done / (time.perf_counter() - start):.2f}")


# --------------------------------------------------------------------------- main


def header(args) -> None:
    import keras

    command = " ".join(shlex.quote(a) for a in [os.path.relpath(sys.executable, ROOT), *sys.argv])
    print(f"$ {command}")
    flags = set(Path("/proc/cpuinfo").read_text().split())
    bf16_hw = sorted(flags & {"avx512_bf16", "amx_bf16", "amx_tile", "avx512f"})
    model = next(
        (l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
         if l.startswith("model name")), "?")  # fmt: skip
    print(f"CPU: {model}, {os.cpu_count()} cores, bf16/AVX-512 flags: {bf16_hw or 'none'}")
    print(f"keras {keras.__version__}, backend {keras.backend.backend()}, "
          f"load average at start {os.getloadavg()[0]:.2f} (others share these cores)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbones", default="vgg16,efficientnet_lite0")
    parser.add_argument("--rss-images", type=int, default=100,
                        help="N for the peak-RSS check of B (N and 4N images)")  # fmt: skip
    parser.add_argument("--no-bf16", action="store_true",
                        help="skip B with precision bfloat16 (the alternative precision)")  # fmt: skip
    parser.add_argument("--levers", action="store_true", help="measure the levers instead")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=5, help="heads trained per feature set")
    parser.add_argument("--rss-child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--threads-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        return rss_child(args.rss_child[0], int(args.rss_child[1]))
    if args.threads_child:
        b, t, n = args.threads_child
        return threads_child(b, int(t), int(n))

    from tlflow import backbones, runtime

    started = time.perf_counter()
    header(args)
    d = schema_defaults()["extraction"]
    threads = default_threads(d["threads"])
    names = args.backbones.split(",")
    if args.levers:
        for backbone in names:
            n = 96 if backbone == "vgg16" else 640
            for t in sorted({1, os.cpu_count() or 1, 2 * (os.cpu_count() or 1)}):
                out = subprocess.run(
                    [sys.executable, __file__, "--threads-child", backbone, str(t), str(n)],
                    capture_output=True, text=True, check=True,
                ).stdout  # fmt: skip
                rate = next(x for x in out.splitlines() if x.startswith("THREADS")).split()[2]
                print(f"{backbone}: compute() with {t} thread(s): {rate} images/s "
                      f"({n} images after the first batch)")  # fmt: skip
        runtime.configure_threads(threads)
        for dtype in ("float32", "bfloat16"):
            print(f"matmul 2048x2048 {dtype}: {matmul_peak(dtype):.1f} GFLOP/s")
        for backbone in names:
            levers(backbone, args.repeats)
        return

    print(f"B = schema defaults: precision {d['precision']}, batch_size {d['batch_size']}, "
          f"threads {d['threads']} -> {threads} (Snakemake caps threads at the cores)")  # fmt: skip
    runtime.configure_threads(threads)  # A and B share the process, so the threads
    splits = ["train", "validation"]
    for backbone in names:
        # Others' load changes by the minute: the peak is measured before A and again
        # right after each B, and the best of those is the machine's peak.
        peaks = {dt: [matmul_peak(dt)] for dt in ("float32", "bfloat16")}
        print(f"\nmatmul 2048x2048 before {backbone}: "
              + ", ".join(f"{dt} {g[0]:.1f} GFLOP/s" for dt, g in peaks.items()))  # fmt: skip
        spec = spec_of(backbone, d["precision"])
        size = spec["image_size"]
        a_feats, a_rate, model = run_a(spec_of(backbone, "float32"), splits)
        flops = count_flops(model, spec["image_size"])
        n_images = sum(len(y) for _, y in a_feats.values())
        print(f"[{backbone} at {size[0]}x{size[1]}, {flops / 1e9:.2f} GFLOP/image, "
              f"{n_images} images (train + validation)]")  # fmt: skip
        print(f"  A tutorial (float32, batch 32, model.predict): {a_rate:7.2f} images/s")
        rows = [("A", a_rate, a_feats, "float32")]
        precisions = [d["precision"]]
        if not args.no_bf16:
            precisions += [p for p in backbones.PRECISIONS if p != d["precision"]]
        for number, precision in enumerate(precisions):
            label = "B" if number == 0 else f"B' ({precision})"
            with tempfile.TemporaryDirectory() as tmp:
                b_spec = spec_of(backbone, precision)
                b_feats, b_rate = run_b(b_spec, splits, d["batch_size"], threads, Path(tmp))
                b_feats = {k: (np.array(x), y) for k, (x, y) in b_feats.items()}
            gflops = b_rate * flops / 1e9
            load = os.getloadavg()[0]
            peaks[precision].append(matmul_peak(precision))
            peak = max(peaks[precision])
            print(f"  {label} workflow ({precision}, batch {d['batch_size']}, {threads} threads): "
                  f"{b_rate:7.2f} images/s = {b_rate / a_rate:.2f}x A; "
                  f"{gflops:.1f} GFLOP/s = {gflops / peak:.0%} of the {precision} matmul peak "
                  f"{peak:.1f} GFLOP/s (matmul after B: {peaks[precision][-1]:.1f}; "
                  f"load {load:.2f})")  # fmt: skip
            rows.append((label, b_rate, b_feats, precision))
        heads = {label: train_heads(feats, args.seeds) for label, _, feats, _ in rows}
        first = schema_defaults()["head"]["seed"]
        for label, _, feats, precision in rows:
            accs = heads[label][1]
            print(f"  head val accuracy on {label}'s features ({precision}), final epoch, "
                  f"seeds {first}..{first + args.seeds - 1}: mean {np.mean(accs):.1%} "
                  f"(min {min(accs):.0%}, max {max(accs):.0%})")  # fmt: skip
        print("  the same heads (trained on B's features) on each one's validation "
              "features: " + ", ".join(f"{label} {accuracy(heads['B'][0], feats):.1%}"
                                       for label, _, feats, _ in rows))  # fmt: skip
        n = args.rss_images
        results = [peak_rss(backbone, c) for c in (n, 4 * n)] if n > 0 else []
        for count, before, peak, rows_mb in results:
            print(f"  B peak RSS, {count} images: {peak:.0f} MiB (before extraction "
                  f"{before:.0f} MiB; its feature rows: {rows_mb:.1f} MiB)")  # fmt: skip
    print(f"\ndone in {time.perf_counter() - started:.0f} s; "
          f"load average at the end {os.getloadavg()[0]:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
