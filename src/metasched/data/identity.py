"""What data a ``data.root`` holds: its resolved path and a fingerprint of its contents.

A run records both when it starts, so that a resume can tell whether it would read the data
it was trained on. A relative ``data.root`` names a different file from another working
directory; the fingerprint catches that, and it stays the same when the data only moved.

Example:
    >>> from metasched.data.registry import DataSpec
    >>> data_identity(DataSpec(name="glyphs")) is None  # embedded data: nothing to check
    True
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import TypedDict

from metasched.data.registry import DATASETS, DataSpec

#: Bytes of a file hashed (with its size): enough to tell two data files apart in practice.
HASHED_BYTES = 64 * 1024 * 1024
#: Entries of a folder listed in its fingerprint (names and sizes, not contents).
LISTED_ENTRIES = 200_000


class DataIdentity(TypedDict):
    """The resolved path of a data set's files and a fingerprint of what they hold."""

    path: str
    fingerprint: str


def data_identity(spec: DataSpec) -> DataIdentity | None:
    """The identity of the files ``spec.root`` names, resolved against the working directory;
    None for embedded data (no ``data.root``) or a root that does not exist (loading it
    reports that)."""
    if not spec.root or spec.name not in DATASETS:
        return None
    path = Path(spec.root).expanduser().resolve()
    if not path.exists():
        return None
    return {"path": str(path), "fingerprint": fingerprint(path)}


def fingerprint(path: Path) -> str:
    """A short hash of a file's size and first :data:`HASHED_BYTES` bytes, or of a folder's
    relative file names and sizes (sorted, up to :data:`LISTED_ENTRIES`)."""
    if path.is_file():
        info = path.stat()
        return _file_fingerprint(str(path), info.st_size, info.st_mtime_ns)
    digest = hashlib.sha256()
    entries: list[str] = []
    for folder, dirs, files in os.walk(path):  # links are not followed: no cycles
        dirs.sort()
        for name in sorted(files):
            file = Path(folder, name)
            try:
                size = file.stat().st_size
            except OSError:
                size = -1
            entries.append(f"{file.relative_to(path)}\0{size}")
            if len(entries) >= LISTED_ENTRIES:
                break
        if len(entries) >= LISTED_ENTRIES:
            break
    digest.update("\n".join(entries).encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=64)
def _file_fingerprint(path: str, size: int, mtime_ns: int) -> str:
    """The hash of one file, read once per process for each size and modification time (a
    resume checks and then records it; compare checks every run of a study)."""
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as handle:
        remaining = HASHED_BYTES
        while remaining > 0 and (block := handle.read(min(remaining, 1 << 20))):
            digest.update(block)
            remaining -= len(block)
    return digest.hexdigest()[:16]
