"""Feature extraction speed: the tutorial's way against the workflow, as whole processes.

Run from the repository root (docs/benchmarks.md shows the output):

    .venv/bin/python benchmarks/extraction.py [--images 2000] [--backbone vgg16]
        [--data ../shared/data/catsdogs-2k] [--repeats 2]
    .venv/bin/python benchmarks/extraction.py --accuracy [--backbone efficientnet_lite0]
        [--data ../shared/data/catsdogs-dev]
    .venv/bin/python benchmarks/extraction.py --levers [--backbone vgg16]
    .venv/bin/python benchmarks/extraction.py --overlap --images 640 [--repeats 3]
    .venv/bin/python benchmarks/extraction.py --precisions [--repeats 4]

Speed (the default): N images of the data's train split (repeated when it has
fewer), each run a fresh process, the runs interleaved in every repeat:

  A. the tutorial's way in today's Keras, one Python process:
     ``keras.utils.image_dataset_from_directory`` (batch 32, float32) -> the
     backbone's ``preprocess_input`` -> ``model.predict``;
  B. the workflow as a user runs it: ``snakemake --cores <cpus>`` on a fresh
     folder, building one extraction job with the schema defaults (``precision:
     auto``); and B' the same with the other precision pinned.

It prints each run's wall seconds (A's process; B's job from its benchmark file,
and the whole ``snakemake`` command), B/A, the cores each kept busy (CPU seconds
over wall seconds; B's from its job's log), and its GFLOP/s against a matrix product's peak measured in
a fresh process in the same minutes.

``--accuracy`` extracts train and validation in float32 and bfloat16 and fits the
default head (``tlflow.head.select``) on each with several seeds. ``--levers``
times what each lever pays inside one process: batch size, the Keras bfloat16
policy against oneDNN's own bfloat16 graph rewrite, XLA, channels-first, threads.
``--overlap`` times the extraction loop with decoding beside the model against
the same loop on pre-decoded images. ``--precisions`` compares bfloat16 with float32
for several keras.applications backbones.

The tutorial's traps that A does *not* copy (each silently costs accuracy):
``rescale=1/255`` instead of the backbone's ``preprocess_input``; ``steps = n //
batch_size``, which drops the last partial batch; labels written as ``[0] * n/2 +
[1] * n/2``; ``image_dataset_from_directory``'s default ``shuffle=True``, which
scrambles features against labels built separately (``shuffle=False`` here).
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from snakemake_command import workflow_command

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MODELS = ROOT.parent / "shared" / "models"
DATA = ROOT.parent / "shared" / "data"


def photos_parser(description: str) -> argparse.ArgumentParser:
    """Arguments of the benchmarks on real photos: --data, --model (EfficientNet-Lite0) and --workdir."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", default=str(DATA / "catsdogs-2k"))
    parser.add_argument("--model", default=str(MODELS / "efficientnet_lite0_notop.keras"))
    parser.add_argument("--workdir", help="folder to work in (default: a temporary one)")
    return parser


BACKBONES = {
    "vgg16": {"name": "vgg16", "weights": str(MODELS / "vgg16_hed_notop.weights.h5")},
    "efficientnet_lite0": {
        "name": str(MODELS / "efficientnet_lite0_notop.keras"),
        "id": "efficientnet_lite0",
        "preprocessing": "none",
    },
}
SIZES = {"vgg16": [150, 150], "efficientnet_lite0": [128, 128]}
# `precision: auto`'s decisions (tlflow.precision), shared by every run the benchmarks
# start, as a user's working directory keeps them: each backbone is timed once here.
STATE = ROOT / ".snakemake" / "tlflow"
os.environ.setdefault("TLFLOW_PRECISION_CACHE", str(STATE / "precision.json"))


def schema_defaults(section: str) -> dict:
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    return {k: v["default"] for k, v in schema["properties"][section]["properties"].items()}


def spec_of(backbone: str, precision: str) -> dict:
    from tlflow import backbones

    return backbones.resolve(BACKBONES[backbone], SIZES[backbone], precision)


def auto_precision(spec: dict) -> tuple[str, str]:
    """What ``precision: auto`` decides for ``spec`` at batch 32 on this machine, and why."""
    from tlflow import precision

    return precision.decide("auto", spec, 32, STATE)


def cpus() -> int:
    return len(os.sched_getaffinity(0))


# --------------------------------------------------------------------------- children


def child(*args: str) -> tuple[str, float, float]:
    """Run this script with ``args`` in a fresh process: (stdout, wall s, CPU s)."""
    before = os.times()
    start = time.perf_counter()
    result = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True)
    wall, after = time.perf_counter() - start, os.times()
    return (
        result.stdout,
        wall,
        (after.children_user + after.children_system) - (before.children_user + before.children_system),
    )


def tutorial_child(backbone: str, folder: str) -> None:
    """A: the tutorial's way, the whole process timed by the parent."""
    import keras

    from tlflow import backbones

    spec = spec_of(backbone, "float32")
    model = backbones.build(spec)
    preprocess = backbones.preprocess_function(spec["preprocessing"])
    dataset = keras.utils.image_dataset_from_directory(
        folder,
        labels="inferred",
        label_mode="binary",
        batch_size=32,
        image_size=tuple(spec["image_size"]),
        shuffle=False,
        verbose=False,
    )
    features = model.predict(dataset.map(lambda x, y: preprocess(x)), verbose=0)
    print(f"ROWS {len(features)}")


def peak_child(dtype: str) -> None:
    """GFLOP/s of a 2048 x 2048 matrix product in ``dtype``, best of 5."""
    import keras

    from tlflow import runtime

    runtime.configure_threads(cpus())
    rng = np.random.default_rng(0)
    a, b = (keras.ops.convert_to_tensor(rng.standard_normal((2048, 2048)), dtype) for _ in "ab")
    times = []
    for _ in range(6):
        start = time.perf_counter()
        keras.ops.convert_to_numpy(keras.ops.matmul(a, b))
        times.append(time.perf_counter() - start)
    print(f"PEAK {2 * 2048**3 / min(times[1:]) / 1e9:.1f}")


def flops_child(backbone: str) -> None:
    """FLOPs of one image (2 per multiply-add) in Conv2D, DepthwiseConv2D and Dense."""
    import keras

    from tlflow import backbones

    model = backbones.build(spec_of(backbone, "float32"))
    if None in tuple(model.input_shape[1:3]):  # any-size input: fix it to get shapes
        model = keras.models.clone_model(
            model, input_tensors=keras.Input((*SIZES[backbone], model.input_shape[-1]))
        )
    total = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            h, w, c = layer.output.shape[1:]
            total += 2 * h * w * c * np.prod(layer.kernel_size)
        elif isinstance(layer, keras.layers.Conv2D):
            h, w, c_out = layer.output.shape[1:]
            c_in = layer.input.shape[-1] // layer.groups
            total += 2 * h * w * c_out * c_in * np.prod(layer.kernel_size)
        elif isinstance(layer, keras.layers.Dense):
            positions = int(np.prod(layer.output.shape[1:-1], dtype=np.int64))
            total += 2 * positions * layer.input.shape[-1] * layer.units
    print(f"FLOPS {int(total)}")


def value(stdout: str, key: str) -> float:
    return float(next(line for line in stdout.splitlines() if line.startswith(key)).split()[1])


# --------------------------------------------------------------------------- speed


def link_images(source: Path, target: Path, count: int) -> int:
    """``count`` of ``source``'s images (cycled, class by class) as symbolic links."""
    classes = sorted(p for p in source.iterdir() if p.is_dir())
    files = [sorted(c.iterdir()) for c in classes]
    for i in range(count):
        cls = i % len(classes)
        original = files[cls][(i // len(classes)) % len(files[cls])]
        folder = target / classes[cls].name
        folder.mkdir(parents=True, exist_ok=True)
        os.symlink(original.resolve(), folder / f"{i:06d}{original.suffix}")
    return count


def workflow_run(backbone: str, data: Path, precision: str) -> dict:
    """B: ``snakemake`` builds one extraction job in a fresh folder; its figures."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        config = {
            "data_dir": str(data),
            "splits": ["train", "validation"],
            "backbones": [BACKBONES[backbone]],
            "image_size": SIZES[backbone],
            **({"extraction": {"precision": precision}} if precision != "auto" else {}),
        }
        (work / "config.yaml").write_text(yaml.safe_dump(config))
        target = f"results/{config['backbones'][0].get('id', backbone)}/features/shards/train/shard-0.npy"
        command = workflow_command(work, "--cores", str(cpus()), target)
        start = time.perf_counter()
        subprocess.run(command, capture_output=True, text=True, check=True)
        wall = time.perf_counter() - start
        bench = next(work.glob("logs/*/extract_shard/train/shard-0.benchmark.tsv"))
        row = next(csv.DictReader(bench.open(), delimiter="\t"))
        log = next(work.glob("logs/*/extract_shard/train/shard-0.log")).read_text()
        used = "bfloat16" if "precision bfloat16" in log else "float32"
        # The job's own CPU seconds, from its log: the benchmark file's cpu_time is
        # sampled every 0.5 s for 15 s, then every 30 s, so it misses most of a 30 s job.
        cpu, seconds = re.search(r"; ([\d.]+) s CPU in ([\d.]+) s", log).groups()
        return {"job": float(row["s"]), "busy": float(cpu) / float(seconds), "wall": wall, "precision": used}


def speed(args) -> None:
    auto, why = auto_precision(spec_of(args.backbone, "auto"))
    other = "float32" if auto == "bfloat16" else "bfloat16"
    print(f"precision auto -> {auto} ({why}); B' pins {other}")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        link_images(args.data / "train", data / "train", args.images)
        link_images(args.data / "validation", data / "validation", 2)  # needed, not timed
        flops = value(child("--flops-child", args.backbone)[0], "FLOPS")
        size = SIZES[args.backbone]
        print(
            f"[{args.backbone} at {size[0]}x{size[1]}, {flops / 1e9:.2f} GFLOP/image, "
            f"{args.images} images of {args.data}/train, {cpus()} cores]"
        )
        runs = {"A": [], "B": [], "B'": []}
        for repeat in range(args.repeats):
            out, wall, cpu = child("--tutorial-child", args.backbone, str(data / "train"))
            assert value(out, "ROWS") == args.images, out
            runs["A"].append({"job": wall, "busy": cpu / wall, "wall": wall, "precision": "float32"})
            runs["B"].append(workflow_run(args.backbone, data, "auto"))
            runs["B'"].append(workflow_run(args.backbone, data, other))
            peaks = {dt: value(child("--peak-child", dt)[0], "PEAK") for dt in ("float32", "bfloat16")}
            print(
                f" repeat {repeat + 1}: load {os.getloadavg()[0]:.2f}; matmul peak "
                + ", ".join(f"{dt} {g:.0f} GFLOP/s" for dt, g in peaks.items())
            )
            for label, rows in runs.items():
                r = rows[-1]
                rate = args.images / r["job"]
                print(
                    f"  {label:3s} {r['precision']:8s} {r['job']:6.1f} s "
                    f"({r['wall']:5.1f} s whole command) {rate:6.1f} images/s "
                    f"= {runs['A'][-1]['job'] / r['job']:4.2f}x A; cores busy {r['busy']:.2f}; "
                    f"{rate * flops / 1e9:6.1f} GFLOP/s = {rate * flops / 1e9 / peaks[r['precision']]:.0%} "
                    f"of the {r['precision']} matmul peak"
                )
        print("medians:")
        a = np.median([r["job"] for r in runs["A"]])
        for label, rows in runs.items():
            job = np.median([r["job"] for r in rows])
            print(
                f"  {label:3s} {rows[0]['precision']:8s} {job:6.1f} s, {a / job:4.2f}x A, "
                f"cores busy {np.median([r['busy'] for r in rows]):.2f}"
            )


# --------------------------------------------------------------------------- accuracy


def accuracy(args) -> None:
    """The default head on float32 and on bfloat16 features of the same images."""
    from tlflow import features, head
    from tlflow.manifest import file_sha256, manifest_text

    settings = schema_defaults("head")
    with tempfile.TemporaryDirectory() as tmp:
        work, feats = Path(tmp), {}
        for precision in ("float32", "bfloat16"):
            for split in ("train", "validation"):
                classes = sorted(p.name for p in (args.data / split).iterdir() if p.is_dir())
                rows = [
                    {"file": f"{split}/{c}/{f.name}", "class": c, "label": label, "sha256": file_sha256(f)}
                    for label, c in enumerate(classes)
                    for f in sorted((args.data / split / c).iterdir())
                ]
                (work / f"{split}.csv").write_text(manifest_text(rows))
                out = [work / f"{precision}-{split}{s}" for s in (".npy", ".csv", ".skipped.csv")]
                features.extract_shard(
                    work / f"{split}.csv",
                    args.data,
                    spec_of(args.backbone, precision),
                    *out,
                    work / "cache",
                    threads=cpus(),
                )
                feats[precision, split] = (np.load(out[0]), np.array([r["label"] for r in rows]))
        print(
            f"[{args.backbone}, {args.data}: head defaults, seeds "
            f"{settings['seed']}..{settings['seed'] + args.seeds - 1}]"
        )
        scores = {}
        for precision in ("float32", "bfloat16"):
            train, validation = feats[precision, "train"], feats[precision, "validation"]
            for seed in range(settings["seed"], settings["seed"] + args.seeds):
                storage = spec_of(args.backbone, precision)["features"]
                table, winner, _ = head.select(train, validation, 2, {**settings, "seed": seed}, storage)
                scores.setdefault(precision, []).append(table[winner])
            accs = [row["val_accuracy"] for row in scores[precision]]
            losses = [row["val_log_loss"] for row in scores[precision]]
            print(
                f"  {precision:8s} validation accuracy {np.mean(accs):.2%} "
                f"(min {min(accs):.2%}, max {max(accs):.2%}), log loss {np.mean(losses):.4f}"
            )
        gap = np.mean([r["val_accuracy"] for r in scores["bfloat16"]]) - np.mean(
            [r["val_accuracy"] for r in scores["float32"]]
        )
        print(f"  bfloat16 - float32: {gap * 100:+.2f} points")


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


def lever_child(backbone: str, variant: str, repeats: int) -> None:
    """Images/s of one process-wide variant (TensorFlow options are fixed at start)."""
    import tensorflow as tf

    from tlflow import backbones, runtime

    threads = int(variant.split("threads")[1]) if "threads" in variant else cpus()
    runtime.configure_threads(threads)
    if "onednn" in variant:  # oneDNN's bfloat16 rewrite of a float32 graph
        tf.config.optimizer.set_experimental_options({"auto_mixed_precision_onednn_bfloat16": True})
    size = SIZES[backbone]
    policy = "bfloat16" if "keras-bf16" in variant else "float32"
    rng = np.random.default_rng(0)
    calls = {}
    if "channels-first" in variant:  # keras.applications only: random weights, bfloat16
        import keras

        keras.config.set_image_data_format("channels_first")
        keras.config.set_dtype_policy("mixed_bfloat16")
        try:
            constructor = getattr(keras.applications, backbones.APPLICATIONS[backbone])
            model = constructor(include_top=False, weights=None, input_shape=(3, *size))
            model.predict_on_batch(np.zeros((1, 3, *size), np.float32))
        except Exception as error:  # noqa: BLE001 - reported, not hidden
            print(f"LEVER {variant} failed: {type(error).__name__}: {str(error)[:160]}")
            return
    else:
        model = backbones.build(spec_of(backbone, policy))
    for batch in (16, 32, 64) if "batch" in variant else (32,):
        shape = (batch, 3, *size) if "channels-first" in variant else (batch, *size, 3)
        x = (rng.random(shape, dtype=np.float32) * 255).astype(np.float32)
        calls[f"{variant} batch {batch}"] = (batch, lambda x=x: model.predict_on_batch(x))
        if "xla" in variant:
            model.jit_compile = True
    seconds = time_calls({name: call for name, (_, call) in calls.items()}, repeats)
    for name, (batch, _) in calls.items():
        print(f"LEVER {name} {batch / seconds[name]:.1f} images/s")


def overlap(args) -> None:
    """Decoding beside the model, as ``features.compute`` does, against pre-decoded images.

    One process, after start-up; real images of the data's train split, ``auto``
    precision; the two interleaved in every repeat.
    """
    from tlflow import features, images

    paths = [str(p) for p in sorted((args.data / "train").glob("*/*"))[: args.images]]
    auto = spec_of(args.backbone, "auto")
    spec = {**auto, "precision": auto_precision(auto)[0], "decode": images.DECODE}
    decoded = {}

    def keep(part, size):
        decoded[tuple(part)] = images.decode_all(part, size)
        return decoded[tuple(part)]

    def run(decode) -> None:
        assert sum(len(i) for i, _, _ in features.compute(paths, spec, 32, cpus(), decode)) == len(paths)

    run(keep)  # start-up, warm-up and the decoded images
    seconds = time_calls(
        {
            "decoding beside the model": lambda: run(images.decode_all),
            "pre-decoded images": lambda: run(lambda part, _: decoded[tuple(part)]),
        },
        args.repeats,
    )
    print(
        f"[{args.backbone}, {spec['precision']}, {len(paths)} images of {args.data.name}, "
        f"{cpus()} cores, medians of {args.repeats}]"
    )
    for name, s in seconds.items():
        print(f"  {name}: {len(paths) / s:.1f} images/s")


PRECISION_BACKBONES = [
    ("VGG16", 150),
    ("ResNet50", 150),
    ("DenseNet121", 150),
    ("EfficientNetB0", 128),
    ("MobileNetV2", 128),
]


def precisions(args) -> None:
    """bfloat16 against float32 for several backbones, and what ``precision: auto``
    picks for each: is it within 5% of the faster?

    keras.applications backbones with random weights, EfficientNet-Lite0 with its
    own; random inputs, batch 32, medians of ``repeats`` batches after a warm-up, in
    this process. ``auto`` decides as in a fresh working directory
    (tlflow.precision: its own child process, its own warm-up and rounds).
    """
    from tlflow import backbones, precision

    print(f"[random inputs, batch 32, {cpus()} cores, medians of {args.repeats} batches each]")
    entries = [({"name": name, "weights": "none"}, [size, size]) for name, size in PRECISION_BACKBONES]
    entries.append((BACKBONES["efficientnet_lite0"], SIZES["efficientnet_lite0"]))
    for entry, size in entries:
        spec = backbones.resolve(entry, size, "auto")
        x = backbones.preprocess_function(spec["preprocessing"])(
            np.random.default_rng(0).random((32, *size, 3), dtype=np.float32) * 255
        )
        models = {p: backbones.build({**spec, "precision": p}) for p in precision.PRECISIONS}
        seconds = time_calls({p: lambda m=m: m.predict_on_batch(x) for p, m in models.items()}, args.repeats)
        rates = {p: 32 / s for p, s in seconds.items()}
        auto = precision.choose(precision.timed(spec, 32))
        best = max(rates.values())
        print(
            f"  {spec['id']} at {size[0]}x{size[1]}: float32 {rates['float32']:.1f}, bfloat16 "
            f"{rates['bfloat16']:.1f} images/s = {rates['bfloat16'] / rates['float32']:.2f}x; "
            f"auto {auto}: {rates[auto] / best:.1%} of the faster"
        )


def levers(args) -> None:
    variants = [
        "keras-bf16 batch",
        "onednn-bf16",
        "float32 batch",
        "float32 xla",
        "keras-bf16 xla",
        "keras-bf16 channels-first",
        "keras-bf16 threads1",
    ]
    print(f"[{args.backbone}, random inputs, {cpus()} cores, medians of {args.repeats}]")
    for variant in variants:
        out = child("--lever-child", args.backbone, variant, str(args.repeats))[0]
        for line in out.splitlines():
            if line.startswith("LEVER"):
                print(" ", line.removeprefix("LEVER "), f"(load {os.getloadavg()[0]:.2f})")
    from concurrent.futures import ThreadPoolExecutor

    from tlflow.images import decode_all

    paths = sorted(args.data.glob("*/*/*"))
    for threads in (1, 2):
        with ThreadPoolExecutor(threads) as pool:
            start = time.perf_counter()
            step = -(-len(paths) // threads)
            parts = [paths[i : i + step] for i in range(0, len(paths), step)]
            list(pool.map(lambda p: decode_all(p, tuple(SIZES[args.backbone])), parts))
            rate = len(paths) / (time.perf_counter() - start)
        print(f"  decode and resize only ({args.data.name}), {threads} thread(s): {rate:.0f} images/s")


# --------------------------------------------------------------------------- main


def header() -> None:
    command = " ".join(shlex.quote(a) for a in [os.path.relpath(sys.executable, ROOT), *sys.argv])
    print(f"$ {command}")
    cpuinfo = Path("/proc/cpuinfo").read_text()
    flags = set(cpuinfo.split()) & {"avx512_bf16", "amx_bf16", "amx_tile", "avx512f", "avx2"}
    model = next(
        (l.split(":", 1)[1].strip() for l in cpuinfo.splitlines() if l.startswith("model name")), "?"
    )
    print(
        f"CPU: {model}, {cpus()} cores, flags: {' '.join(sorted(flags)) or 'none'}; "
        f"load average at start {os.getloadavg()[0]:.2f} (others may share these cores)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", choices=sorted(BACKBONES))
    parser.add_argument("--data", type=Path)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--accuracy", action="store_true")
    parser.add_argument("--levers", action="store_true")
    parser.add_argument("--overlap", action="store_true")
    parser.add_argument("--precisions", action="store_true")
    for hidden in ("--tutorial-child", "--peak-child", "--flops-child", "--lever-child"):
        parser.add_argument(hidden, nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tutorial_child:
        return tutorial_child(*args.tutorial_child)
    if args.peak_child:
        return peak_child(*args.peak_child)
    if args.flops_child:
        return flops_child(*args.flops_child)
    if args.lever_child:
        b, v, r = args.lever_child
        return lever_child(b, v, int(r))
    args.backbone = args.backbone or ("efficientnet_lite0" if args.accuracy else "vgg16")
    args.data = args.data or DATA / ("catsdogs-dev" if args.accuracy else "catsdogs-2k")
    started = time.perf_counter()
    header()
    modes = {"accuracy": accuracy, "levers": levers, "overlap": overlap, "precisions": precisions}
    next((mode for flag, mode in modes.items() if getattr(args, flag)), speed)(args)
    print(f"done in {time.perf_counter() - started:.0f} s; load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
