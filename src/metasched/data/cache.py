"""Where prepared data sets live on disk, and how splits are saved atomically."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from metasched.data.pool import ClassPool, DataSplits

SPLITS = ("train", "val", "test")


def cache_dir() -> Path:
    """``$METASCHED_CACHE``, else ``$XDG_CACHE_HOME/metasched``, else ``~/.cache/metasched``."""
    if "METASCHED_CACHE" in os.environ:
        return Path(os.environ["METASCHED_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "metasched"


def save_splits(path: Path, splits: DataSplits) -> None:
    """Writes the three pools to one ``.npz`` file, atomically (temporary file + rename)."""
    arrays: dict[str, np.ndarray] = {}
    for split in SPLITS:
        pool = splits[split]
        arrays[f"{split}_images"] = pool.images
        arrays[f"{split}_starts"] = pool.starts
        arrays[f"{split}_names"] = np.array(pool.class_names, dtype=str)
        arrays[f"{split}_groups"] = np.array(pool.groups, dtype=str)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as handle:
        np.savez(handle, **arrays)  # type: ignore[arg-type]
    os.replace(tmp, path)


def load_splits(path: Path) -> DataSplits:
    """Reads what :func:`save_splits` wrote."""
    with np.load(path, allow_pickle=False) as archive:
        pools = {
            split: ClassPool(
                archive[f"{split}_images"],
                archive[f"{split}_starts"],
                tuple(str(s) for s in archive[f"{split}_names"]),
                tuple(str(s) for s in archive[f"{split}_groups"]),
            )
            for split in SPLITS
        }
    return DataSplits(**pools)
