"""A rule's optional inputs, read one way by every script.

An optional input (the audit's summary, the fine-tuned model's files, a split's
views, the corrections table) is always named in its rule, and given as ``[]``
where the config leaves it out; a script reads it with ``optional`` and gets None
then, never a missing name or an empty list to test.
"""

from __future__ import annotations


def optional(inputs, *names):
    """The files a rule names ``names`` (the one value for one name, else a tuple of
    them, each a path or a list of paths as the rule gives it), or None where the rule
    gives them none (``[]``). ``inputs``: ``snakemake.input``."""
    values = [inputs[name] for name in names]
    given = [name for name, value in zip(names, values) if len(value)]
    if not given:
        return None
    if len(given) < len(names):
        raise ValueError(
            f"optional inputs {', '.join(names)} come together, but only {', '.join(given)} came"
        )
    return values[0] if len(values) == 1 else tuple(values)
