"""What is below a folder: its image files, and every other entry named with the reason.

An entry is judged by its file type, never opened: a FIFO named ``y.jpg`` would
block the read that hashes it. Plain strings and the types os.scandir caches (no
stat for a plain file or folder, one per folder): a million files list in about
a second.
"""

from __future__ import annotations

import heapq
import os
import stat
from collections import Counter

# Extensions Pillow decodes; anything else is listed as ignored, not read.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
# Why an entry is not an image of the data set; a detail may follow after ": ".
HIDDEN = "hidden"
NOT_IMAGE = "not an image file (by its extension)"
NOT_REGULAR = "not a regular file"
BROKEN_LINK = "broken symbolic link"
NOT_IN_CLASS = "not in a class folder"
NOT_A_SPLIT = "not a split in config 'splits'"
LISTED_ALREADY = "symbolic link to a folder listed already (a loop, or a second path to it)"
_SPECIAL = {
    stat.S_IFIFO: "FIFO",
    stat.S_IFSOCK: "socket",
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
}
_DIR, _FILE, _BROKEN = "folder", "file", "broken"


class ListingError(ValueError):
    """A folder below the data cannot be listed."""


def is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS and not name.startswith(".")


def _kind(entry: os.DirEntry) -> str:
    """_DIR or _FILE (links followed), _BROKEN (a link to nothing, or a loop), or what else it is."""
    try:
        if entry.is_file():
            return _FILE
        if entry.is_dir():
            return _DIR
        mode = entry.stat().st_mode
    except OSError:  # a link to itself raises ELOOP
        return _BROKEN
    return _SPECIAL.get(stat.S_IFMT(mode), f"mode {mode:o}")


def entries(folder: str | os.PathLike) -> list[tuple[os.DirEntry, str]]:
    """The entries of one folder with their kind."""
    return [(entry, _kind(entry)) for entry in _listed(folder)]


def _listed(folder: str | os.PathLike) -> list[os.DirEntry]:
    """The entries of one folder; a ListingError names a folder that cannot be read."""
    try:
        with os.scandir(folder) as found:
            return list(found)
    except OSError as error:
        raise _unlistable(folder, error) from None


def _unlistable(folder, error: OSError) -> ListingError:
    return ListingError(
        f"cannot list the folder '{folder}' ({error.strerror or error}): its images "
        "would be left out. Give it read and execute permission, or move it out."
    )


def _reason(entry_kind: str) -> str:
    return {_FILE: NOT_IMAGE, _BROKEN: BROKEN_LINK}.get(entry_kind, f"{NOT_REGULAR}: {entry_kind}")


def outside(entry: os.DirEntry, entry_kind: str, reason: str) -> tuple[str, str]:
    """(name, reason) of an entry that is not walked: a folder's name ends in '/'; hidden wins."""
    name = entry.name + ("/" if entry_kind == _DIR else "")
    return name, HIDDEN if entry.name.startswith(".") else reason


def is_folder(entry: os.DirEntry, entry_kind: str) -> bool:
    """A folder to walk: hidden ones (.git, .ipynb_checkpoints) are named, not walked."""
    return entry_kind == _DIR and not entry.name.startswith(".")


def walk(roots: dict, seen: dict | None = None, base: str = "") -> tuple[dict, list[tuple[str, str]]]:
    """Image files below each root; ``roots`` maps a key to (folder, prefix ending in '/').

    Returns ``{key: sorted prefix + path below the root}`` and every other entry as
    (prefix + path, reason). Links to folders are followed after every real folder
    is listed, in name order; one that leads to a folder listed already (``seen``:
    (st_dev, st_ino) -> its path) is named with that path (``base`` + prefix), not
    walked. A broken link with an image name is kept: hashing it names it as unreadable.
    """
    found: dict[str, list[str]] = {key: [] for key in roots}
    ignored: list[tuple[str, str]] = []
    seen = dict(seen or {})
    folders = [(os.fspath(folder), prefix, key) for key, (folder, prefix) in roots.items()]
    links: list[tuple[str, str, str]] = []  # (prefix, folder, key), a heap
    while folders or links:
        if folders:
            folder, prefix, key = folders.pop()
        else:
            prefix, folder, key = heapq.heappop(links)
        identity = identify(folder)
        if identity in seen:
            ignored.append((prefix, f"{LISTED_ALREADY}: {seen[identity]}"))
            continue
        seen[identity] = base + prefix
        files = found[key]
        for entry in _listed(folder):
            name = prefix + entry.name
            entry_kind = _kind(entry)
            if entry_kind in (_FILE, _BROKEN) and is_image(entry.name):
                files.append(name)
            elif is_folder(entry, entry_kind):
                if entry.is_symlink():
                    heapq.heappush(links, (f"{name}/", entry.path, key))
                else:
                    folders.append((entry.path, f"{name}/", key))
            else:
                rel, reason = outside(entry, entry_kind, _reason(entry_kind))
                ignored.append((prefix + rel, reason))
    for files in found.values():
        files.sort()
    return found, sorted(ignored)


def images_below(folder: str | os.PathLike) -> tuple[list[str], list[tuple[str, str]]]:
    """walk() of one folder: its image files and the rest, relative to it."""
    found, ignored = walk({"": (folder, "")}, base=os.path.join(folder, ""))
    return found[""], ignored


def identify(folder: str) -> tuple[int, int]:
    """(st_dev, st_ino): the same folder by any path."""
    try:
        info = os.stat(folder)
    except OSError as error:
        raise _unlistable(folder, error) from None
    return info.st_dev, info.st_ino


def summary(ignored: list[tuple[str, str]], shown: int = 5) -> str:
    """Counts by reason (without its detail) and the first few names."""
    counts = Counter(reason.partition(": ")[0] for _, reason in ignored)
    names = ", ".join(name for name, _ in ignored[:shown])
    return (
        "; ".join(f"{n} {reason}" for reason, n in counts.most_common())
        + f" (first: {names}{', ...' if len(ignored) > shown else ''})"
    )
