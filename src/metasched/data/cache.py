"""Where prepared data sets live on disk, and how splits are saved atomically."""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from metasched.data.pool import AssayPool, ClassPool, DataSplits

SPLITS = ("train", "val", "test")


def cache_dir() -> Path:
    """``$METASCHED_CACHE``, else ``$XDG_CACHE_HOME/metasched``, else ``~/.cache/metasched``."""
    if "METASCHED_CACHE" in os.environ:
        return Path(os.environ["METASCHED_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "metasched"


def _pool_arrays(pool: ClassPool | AssayPool) -> dict[str, np.ndarray]:
    """A pool's fields as arrays (string tuples as unicode arrays, never objects)."""
    arrays = {}
    for field in fields(pool):
        value = getattr(pool, field.name)
        arrays[field.name] = np.array(value, dtype=str) if isinstance(value, tuple) else value
    return arrays


def _pool_from(kind: type, archive: Any, prefix: str) -> Any:
    values = {}
    for field in fields(kind):
        value = archive[prefix + field.name]
        if value.dtype.kind == "U":
            value = tuple(str(s) for s in value)
        elif value.ndim == 0:
            value = value.item()
        values[field.name] = value
    return kind(**values)


def save_splits(path: Path, splits: DataSplits[Any]) -> None:
    """Writes the three pools and the notes to one ``.npz`` file, atomically (temporary file +
    rename). The pool kind is stored, so :func:`load_splits` rebuilds the right one."""
    arrays: dict[str, np.ndarray] = {
        "kind": np.array(type(splits.train).__name__),
        "notes": np.array(splits.notes, dtype=str),
    }
    for split in SPLITS:
        for name, value in _pool_arrays(splits[split]).items():
            arrays[f"{split}_{name}"] = np.asarray(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as handle:
        np.savez(handle, **arrays)  # type: ignore[arg-type]
    os.replace(tmp, path)


def load_splits(path: Path) -> DataSplits[Any]:
    """Reads what :func:`save_splits` wrote (files from before pool kinds were stored hold
    class pools under the same names)."""
    with np.load(path, allow_pickle=False) as archive:
        kind = str(archive["kind"]) if "kind" in archive else ClassPool.__name__
        pool_type = {cls.__name__: cls for cls in (ClassPool, AssayPool)}[kind]
        notes = tuple(str(s) for s in archive["notes"]) if "notes" in archive else ()
        if kind == ClassPool.__name__ and "train_class_names" not in archive:
            pools = {  # the first format named class pools' fields differently
                split: ClassPool(
                    archive[f"{split}_images"],
                    archive[f"{split}_starts"],
                    tuple(str(s) for s in archive[f"{split}_names"]),
                    tuple(str(s) for s in archive[f"{split}_groups"]),
                )
                for split in SPLITS
            }
        else:
            pools = {split: _pool_from(pool_type, archive, f"{split}_") for split in SPLITS}
    return DataSplits(**pools, notes=notes)
