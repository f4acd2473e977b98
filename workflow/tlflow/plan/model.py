"""The plan as a value: what every job of a run reads, and its JSON form."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field


class PlanError(ValueError):
    """The run cannot be planned, or a job finds no plan of its run; the message says the fix."""


def config_digest(config: dict) -> str:
    """Short stable hash of a validated config: a job recomputes it to find its run's plan."""
    blob = json.dumps(config, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class Listing:
    """A listing's manifest text, staged as ``<staged>/<digest>.csv``, and its images."""

    digest: str
    images: int


@dataclass(frozen=True)
class Plan:
    config: str  # config_digest of the config it was made for
    precision: dict[str, str]  # backbone id -> its features' precision, also in its spec
    precision_reason: dict[str, str]  # backbone id -> why (tlflow.precision)
    specs: dict[str, dict]  # backbone id -> spec (tlflow.backbones)
    classes: list[str]
    splits: list[str]
    evaluation_split: str
    # Split -> view set (tlflow.views): train's augmented views, the evaluation
    # split's test-time views; a split without views is not a key.
    views: dict[str, dict]
    # "<split>/shard-<k>" of every non-empty shard (what extraction reads),
    # "<split>/labels" of every split (what its join reads), and "predict" (images
    # to predict).
    listings: dict[str, Listing]
    staged: str  # the folder of the staged listings
    # Entries under data_dir and the images to predict that are no image of the
    # plan: (path, reason).
    ignored: list[tuple[str, str]]
    # Images per split and class, as the log prints them (tlflow.layouts.counts).
    counts: str = ""
    # What config 'corrections' changed: {"relabelled": n, "excluded": m}, or {}.
    corrected: dict[str, int] = field(default_factory=dict)
    # What the run should know about its data (a class rare in a split), one line each.
    warnings: list[str] = field(default_factory=list)
    # Several labels per image (tlflow.label_sets): ``classes`` are then the labels,
    # and a manifest's class holds an image's labels joined by ``separator``.
    multi_label: bool = False
    separator: str = "|"

    def listing_size(self, name: str) -> int:
        return self.listings[name].images

    def staged_listing(self, name: str) -> str:
        return f"{self.staged}/{self.listings[name].digest}.csv"

    def shard_numbers(self, split: str) -> list[int]:
        """Shards of ``split`` that hold at least one image, in order."""
        prefix = f"{split}/shard-"
        return sorted(int(n.removeprefix(prefix)) for n in self.listings if n.startswith(prefix))

    def split_size(self, split: str) -> int:
        """Images of ``split`` with a class (its shards may hold excluded ones too)."""
        return self.listing_size(f"{split}/labels")

    def head_meta(self, backbone: str) -> dict:
        """Recorded beside a backbone's head: what prediction needs to rebuild the
        features, and the augmented views it was trained on (if any)."""
        meta = {"classes": self.classes, "backbone": self.specs[backbone]}
        if self.multi_label:
            meta["multi_label"] = {"separator": self.separator}
        if "train" in self.views:
            train = self.views["train"]
            meta["augmentation"] = {"views": len(train["names"]), **train["family"]}
        return meta

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        data = json.loads(text)
        data["listings"] = {name: Listing(**entry) for name, entry in data["listings"].items()}
        data["ignored"] = [tuple(entry) for entry in data["ignored"]]
        return cls(**data)
