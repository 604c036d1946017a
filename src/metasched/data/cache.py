"""Prepared data sets on disk: one directory per data set, memory-mapped when read.

A prepared directory holds one ``.npy`` file per array field of each split's pool
(``train_images.npy``, ``val_starts.npy``, ...) and ``splits.json`` with the pool kind, the
string fields and the notes. Arrays open memory-mapped and read-only, so a split of images
stays on disk and only the images an episode draws are read: miniImageNet's 0.8 GB training
split costs no resident memory up front. Nothing is ever unpickled (``allow_pickle=False``).

The same format serves the cache of built data sets and ``metasched data convert``.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from metasched.data.pool import AssayPool, ClassPool, DataSplits
from metasched.errors import MetaschedError

SPLITS = ("train", "val", "test")
INDEX = "splits.json"
FORMAT = "metasched-splits"
FORMAT_VERSION = 1
POOL_KINDS = {cls.__name__: cls for cls in (ClassPool, AssayPool)}


def cache_dir() -> Path:
    """``$METASCHED_CACHE``, else ``$XDG_CACHE_HOME/metasched``, else ``~/.cache/metasched``."""
    if "METASCHED_CACHE" in os.environ:
        return Path(os.environ["METASCHED_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "metasched"


def is_prepared(path: Path) -> bool:
    """Whether ``path`` is a directory of prepared splits."""
    return (path / INDEX).is_file()


class SplitsWriter:
    """Writes prepared splits into a temporary directory that is renamed into place at
    :meth:`commit`, so a reader never sees half a data set.

    Large image arrays can be filled in place (:meth:`images`) instead of being built in
    memory first: a converter writes one class at a time and holds only that class.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        self.filled: dict[str, np.ndarray] = {}

    def images(self, split: str, shape: tuple[int, int, int, int]) -> np.ndarray:
        """A writable uint8 (N, C, H, W) array backed by ``split``'s image file."""
        name = f"{split}_images"
        array = np.lib.format.open_memmap(self.tmp / f"{name}.npy", "w+", np.uint8, shape)
        self.filled[name] = array
        return array

    def commit(self, splits: DataSplits[Any]) -> None:
        """Writes every field not filled in place and the index, then renames the directory."""
        kind = type(splits.train).__name__
        strings: dict[str, list[str]] = {}
        for split in SPLITS:
            pool = splits[split]
            for field in fields(pool):
                name, value = f"{split}_{field.name}", getattr(pool, field.name)
                if isinstance(value, tuple):
                    strings[name] = [str(s) for s in value]
                elif name in self.filled:
                    self.filled[name].flush()  # type: ignore[attr-defined]
                else:
                    np.save(self.tmp / f"{name}.npy", np.asarray(value), allow_pickle=False)
        index = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "kind": kind,
            "notes": list(splits.notes),
            "strings": strings,
        }
        (self.tmp / INDEX).write_text(json.dumps(index))
        self.filled.clear()
        try:
            os.replace(self.tmp, self.path)
        except OSError:  # another process prepared the same data set first: keep theirs
            if not is_prepared(self.path):
                raise
            shutil.rmtree(self.tmp, ignore_errors=True)

    def abort(self) -> None:
        """Removes the temporary directory."""
        self.filled.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)


def save_splits(path: Path, splits: DataSplits[Any]) -> None:
    """Writes the three pools and the notes as a prepared directory, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    SplitsWriter(path).commit(splits)


def load_splits(path: Path) -> DataSplits[Any]:
    """Opens a prepared directory (arrays memory-mapped, read-only).

    Raises:
        MetaschedError: the directory is not a readable prepared data set.
    """
    try:
        index = json.loads((path / INDEX).read_text())
        if index.get("format") != FORMAT or index.get("version") != FORMAT_VERSION:
            raise ValueError(f"format {index.get('format')} v{index.get('version')}")
        kind = POOL_KINDS[index["kind"]]
        pools = {}
        for split in SPLITS:
            values: dict[str, Any] = {}
            for field in fields(kind):
                name = f"{split}_{field.name}"
                if name in index["strings"]:
                    values[field.name] = tuple(index["strings"][name])
                else:
                    array = np.load(path / f"{name}.npy", mmap_mode="r", allow_pickle=False)
                    values[field.name] = array.item() if array.ndim == 0 else array
            pools[split] = kind(**values)
        return DataSplits(**pools, notes=tuple(str(s) for s in index["notes"]))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise MetaschedError(
            f"{path} is not a readable prepared data set ({error}); delete it and prepare the"
            " data set again (metasched data prepare / convert)"
        ) from error


def cached_splits(path: Path, build: Any) -> DataSplits[Any]:
    """The prepared splits at ``path``, built by ``build()`` and saved on first use. A cache
    entry that cannot be read is rebuilt, not fatal."""
    if is_prepared(path):
        try:
            return load_splits(path)
        except MetaschedError:
            shutil.rmtree(path, ignore_errors=True)
    save_splits(path, build())
    return load_splits(path)
