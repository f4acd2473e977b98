"""What each split is for, and what it must hold.

``train`` fits the head, ``validation`` chooses and calibrates it, and the
evaluation split (config ``evaluation: split:``) scores it. A split with none of
these roles would be extracted and counted but never scored, so it is refused; and
a split that lost every image of a class would choose, calibrate or score a head
without that class, so it stops the run.
"""

from __future__ import annotations

TRAIN = "train"
SELECTION = "validation"  # chooses the head and fits its temperature


class SplitError(ValueError):
    """The splits cannot do their roles: the config names the wrong ones, or one lacks a class."""


def evaluation_split(splits: list[str], chosen: str | None = None) -> str:
    """The split the evaluation scores: ``chosen`` (config ``evaluation: split:``),
    else ``test`` when configured, else validation; every split must have a role."""
    for required in (TRAIN, SELECTION):
        if required not in splits:
            raise SplitError(
                f"config 'splits' is {splits} but must include '{required}'; 'test' is optional."
            )
    if chosen is None:
        chosen = "test" if "test" in splits else SELECTION
    elif chosen == TRAIN:
        raise SplitError(
            "config 'evaluation: split: train' would score the head on the images it "
            "was fitted on: name a split held out from training, e.g. 'test'."
        )
    elif chosen not in splits:
        raise SplitError(
            f"config 'evaluation: split: {chosen}' is not one of 'splits' {splits}: "
            f"add '{chosen}' to 'splits', or name one of them."
        )
    unscored = [split for split in splits if split not in (TRAIN, SELECTION, chosen)]
    if unscored:
        raise SplitError(
            f"split(s) {unscored} in 'splits' would be extracted but never scored: the "
            f"evaluation scores '{chosen}'. Set 'evaluation: split: {unscored[0]}' to "
            "score it instead, or remove it from 'splits'."
        )
    return chosen


def _names(cells, separator: str | None) -> set:
    """The classes of class cells, or with ``separator`` the labels they join."""
    if separator is None:
        return set(cells)
    return {label for cell in cells if isinstance(cell, str) and cell for label in cell.split(separator)}


def check_classes(split: str, listed, extracted, skipped, separator: str | None = None) -> None:
    """Raise SplitError when a class of ``split``'s labels listing keeps no row (a
    label, of multi-label data's cells joined by ``separator``).

    ``listed`` is the labels listing (file, class, label), ``extracted`` the files the
    shards hold rows of, ``skipped`` the listed images 'on_bad_image: skip' left out
    (file, error, and ``list``: the skipped CSV that names it, which stays on disk
    when the join fails). Called before the split is joined, so a split without a
    class never looks joined.
    """
    kept = listed["file"].isin(extracted)
    missing = sorted(_names(listed["class"], separator) - _names(listed.loc[kept, "class"], separator))
    if not missing:
        return
    lost = set(
        listed.loc[[bool(_names([cell], separator) & set(missing)) for cell in listed["class"]], "file"]
    )
    left_out = skipped[skipped["file"].isin(lost)]
    files = sorted(left_out["file"])
    listing = "".join(f"\n  {file}" for file in files[:10])
    if len(files) > 10:
        listing += f"\n  ... and {len(files) - 10} more"
    raise SplitError(
        f"split '{split}' has no image left of class(es) {missing}: 'on_bad_image: skip' "
        f"left out its {len(files)} undecodable image(s):{listing}\n(listed with their "
        f"errors in {', '.join(sorted(set(left_out['list'])))}). A head chosen, calibrated or "
        "scored without a class gives results that look complete and are wrong. Replace "
        f"the broken images, or add images of class(es) {missing} to split '{split}'."
    )
