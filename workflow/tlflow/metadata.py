"""What travels beside a head and a deployed model: classes, backbone spec, head.

``head.json`` (beside ``head.h5``) and ``model.json`` (beside ``model.keras``) hold
one :class:`Meta`. Every reader and writer goes through it, so a change of shape is
made here and found by a search.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import pooling
from .atomic import atomic_path
from .readers import damaged, read_json


@dataclass(frozen=True)
class BackboneSpec:
    """Everything that shapes the features (see backbones.resolve, which makes it)."""

    id: str
    image_size: list[int]
    precision: str
    preprocessing: str
    decode: str | None = None  # images.DECODE; absent from heads of versions before it
    application: str | None = None  # a keras.applications model ...
    weights: str | None = None
    weights_sha256: str | None = None
    model: str | None = None  # ... or a saved .keras model
    model_sha256: str | None = None
    features: str | None = None  # pooling.STORAGES; absent from heads before it: "map"

    @classmethod
    def from_dict(cls, spec: dict) -> BackboneSpec:
        return cls(**spec)

    def to_dict(self) -> dict:
        """The plain dict backbones.build and the feature cache work with."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    @property
    def storage(self) -> str:
        """What the features store per image: ``pooled`` or ``map`` (pooling.stored)."""
        return pooling.stored(self.to_dict())

    def describe(self) -> tuple[str, str]:
        """(source, weights) in words, for people."""
        if self.model:
            return self.model, "in the model file"
        return f"keras.applications {self.application}", self.weights


@dataclass(frozen=True)
class Meta:
    classes: list[str]
    backbone: BackboneSpec
    feature_shape: list[int] = field(default_factory=list)
    head: dict = field(default_factory=dict)  # the head's settings and how it was chosen
    # Views the head trained on, and test-time views (model.json); left out when none.
    augmentation: dict = field(default_factory=dict)
    # Several labels per image (tlflow.multilabel): {"separator": ...}; left out when not.
    multi_label: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, meta: dict) -> Meta:
        return cls(**{**meta, "backbone": BackboneSpec.from_dict(meta["backbone"])})

    @classmethod
    def read(cls, path) -> Meta:
        """The metadata in ``path``; DamagedFileError naming the file if it is not such metadata."""
        try:
            return cls.from_dict(read_json(path))
        except (KeyError, TypeError, ValueError) as error:
            raise damaged(path, error) from None

    def to_dict(self) -> dict:
        meta = {**asdict(self), "backbone": self.backbone.to_dict()}
        for key in ("augmentation", "multi_label"):  # the files of a run without them stay as they were
            if not meta[key]:
                del meta[key]
        return meta

    def write(self, path) -> None:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")


def model_meta_path(model_path) -> Path:
    """Where the metadata of a deployed model lives: beside it, ending in .json."""
    return Path(model_path).with_suffix(".json")
