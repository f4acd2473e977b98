"""Optional inputs: every script reads them through tlflow.job_inputs, None where the rule gives []."""

from __future__ import annotations

import pytest
from snakemake.iocontainers import Namedlist

from tlflow.job_inputs import optional


def _inputs(**named) -> Namedlist:
    """``snakemake.input`` as a rule's named inputs make it: a list's name covers its
    slice (an empty one for ``[]``), a path's name its one item."""
    inputs = Namedlist()
    for name, value in named.items():
        start = len(inputs)
        if isinstance(value, list):
            inputs.extend(value)
            inputs._set_name(name, start, len(inputs))
        else:
            inputs.append(value)
            inputs._set_name(name, start)
    return inputs


def test_an_input_left_out_is_none_and_a_given_one_is_as_the_rule_gives_it():
    inputs = _inputs(audit=[], corrections="fixes.csv", views=["s0.npy", "s1.npy"], views_manifest="m.csv")
    assert optional(inputs, "audit") is None
    assert optional(inputs, "corrections") == "fixes.csv"
    views, manifest = optional(inputs, "views", "views_manifest")
    assert list(views) == ["s0.npy", "s1.npy"] and manifest == "m.csv"


def test_inputs_that_come_together_are_none_together():
    assert optional(_inputs(views=[], views_manifest=[]), "views", "views_manifest") is None
    with pytest.raises(ValueError, match="only views_manifest came"):
        optional(_inputs(views=[], views_manifest="m.csv"), "views", "views_manifest")
