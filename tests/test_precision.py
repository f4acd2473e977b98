"""`extraction.precision: auto`: the faster of two timings, timed once per backbone
spec and machine, never by resources; pinned values are kept and time nothing."""

import json

import pytest
from test_plan import folder, validated  # noqa: F401 - the fixture and the config of the plan's tests
from tlflow import backbones, plan, precision


class FakeTimer:
    """Seconds per batch by precision (``by_id``: of each backbone id), and the
    (backbone id, batch size) it was asked to time."""

    def __init__(self, float32: float, bfloat16: float):
        self.seconds, self.by_id, self.timed = {"float32": float32, "bfloat16": bfloat16}, {}, []

    def __call__(self, spec, batch_size):
        self.timed.append((spec["id"], batch_size))
        return dict(self.by_id.get(spec["id"], self.seconds))


@pytest.fixture
def timer(monkeypatch, tmp_path):
    """Install a fake timer (bfloat16 twice as fast) and a cache of this test's own."""
    monkeypatch.setenv(precision.CACHE_ENV, str(tmp_path / "decisions.json"))
    fake = FakeTimer(float32=2.0, bfloat16=1.0)
    monkeypatch.setattr(precision, "timed", fake)
    return fake


def test_auto_picks_the_faster_caches_it_and_a_resource_change_reruns_nothing(folder, timer):  # noqa: F811
    first = plan.make_plan(validated(), ".state")
    assert first.precision == {"vgg16": "bfloat16"} and first.specs["vgg16"]["precision"] == "bfloat16"
    assert timer.timed == [("vgg16", 8)]
    # Both figures logged: 8 images per batch in 2 s and in 1 s.
    assert "float32 4.0 images/s, bfloat16 8.0 images/s" in first.precision_reason["vgg16"]
    assert "timed now" in first.precision_reason["vgg16"]

    # Other threads and memory: the same spec, read from the cache, timed no more.
    extraction = {**validated()["extraction"], "threads": 1, "mem_mb": 999}
    second = plan.make_plan(
        validated(extraction=extraction, head={**validated()["head"], "threads": 1}), ".state"
    )
    assert timer.timed == [("vgg16", 8)]
    assert second.specs == first.specs
    assert backbones.spec_digest(second.specs["vgg16"]) == backbones.spec_digest(first.specs["vgg16"])
    assert "cached in" in second.precision_reason["vgg16"]

    # What the timing measures is part of the key: another batch size is timed again.
    plan.make_plan(validated(extraction={**extraction, "batch_size": 4}), ".state")
    assert timer.timed == [("vgg16", 8), ("vgg16", 4)]


def test_auto_keeps_float32_unless_bfloat16_is_clearly_faster(folder, timer):  # noqa: F811
    timer.seconds = {"float32": 1.0, "bfloat16": 1.5}
    assert plan.make_plan(validated(), ".state").precision == {"vgg16": "float32"}
    # Within BFLOAT16_GAIN float32 stays: the more exact of the two.
    assert precision.choose({"float32": 1.02, "bfloat16": 1.0}) == "float32"
    assert precision.choose({"float32": 1.10, "bfloat16": 1.0}) == "bfloat16"


def test_each_backbone_spec_gets_its_own_decision(folder, timer):  # noqa: F811
    config = validated(
        backbones=[
            {"name": "vgg16", "weights": "none"},
            {"name": "vgg16", "weights": "none", "id": "big", "image_size": [48, 48]},
        ]
    )
    timer.by_id = {"big": {"float32": 1.0, "bfloat16": 2.0}}
    made = plan.make_plan(config, ".state")
    assert made.precision == {"vgg16": "bfloat16", "big": "float32"}
    assert [made.specs[b]["precision"] for b in ("vgg16", "big")] == ["bfloat16", "float32"]
    assert timer.timed == [("vgg16", 8), ("big", 8)]


@pytest.mark.parametrize("pinned", ["float32", "bfloat16"])
def test_a_pinned_precision_is_kept_and_times_nothing(folder, timer, pinned):  # noqa: F811
    made = plan.make_plan(validated(extraction={**validated()["extraction"], "precision": pinned}), ".state")
    assert made.precision == {"vgg16": pinned} and made.precision_reason == {"vgg16": "set in the config"}
    assert timer.timed == []


def test_where_nothing_can_be_timed_float32_is_chosen_and_not_cached(folder, timer, monkeypatch):  # noqa: F811
    def broken(spec, batch_size):
        raise RuntimeError("ModuleNotFoundError: No module named 'tensorflow'")

    monkeypatch.setattr(precision, "timed", broken)
    made = plan.make_plan(validated(), ".state")
    assert made.precision == {"vgg16": "float32"}
    assert "could not be timed" in made.precision_reason["vgg16"]
    assert not precision.cache_path(".state").exists()


def test_the_timing_child_times_both_precisions_of_a_real_backbone(tmp_path):
    spec = backbones.resolve({"name": "vgg16", "weights": "none"}, [32, 32], "auto")
    seconds = precision.timed(spec, 2)
    assert set(seconds) == {"float32", "bfloat16"} and all(s > 0 for s in seconds.values())
    # A backbone that cannot be built is refused with its message, not timed as float32.
    with pytest.raises(backbones.BackboneError, match="could not build vgg16"):
        precision.timed({**spec, "image_size": [16, 16]}, 2)


def test_the_cache_is_keyed_by_the_spec_without_its_id_and_precision(tmp_path):
    spec = backbones.resolve({"name": "vgg16", "weights": "none"}, [32, 32], "auto")
    key = precision.cache_key(spec, 8)
    assert precision.cache_key({**spec, "id": "other", "precision": "float32"}, 8) == key
    assert precision.cache_key({**spec, "image_size": [64, 64]}, 8) != key
    assert precision.cache_key(spec, 16) != key
    # A damaged cache is bookkeeping only: read as empty, timed again.
    damaged = tmp_path / "precision.json"
    damaged.write_text("{not json")
    assert precision._read_cache(damaged) == {}
    json.loads(json.dumps(precision.machine()))  # the key's parts are plain JSON
