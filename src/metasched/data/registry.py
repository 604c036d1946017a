"""Data sets by name: what ``data.name`` in a config may say."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from metasched.data.folder import load_image_folder
from metasched.data.hershey import load_glyphs
from metasched.data.omniglot import load_omniglot
from metasched.data.pool import DataSplits
from metasched.errors import MetaschedError


@dataclass(frozen=True)
class DataSpec:
    """Which data set to load and how: the ``data`` section of a config."""

    name: str = "glyphs"
    root: str | None = None
    image_size: int = 28
    channels: int = 1
    invert: bool = False
    seed: int = 0


@dataclass(frozen=True)
class DatasetEntry:
    description: str
    needs_root: bool
    load: Callable[[DataSpec], DataSplits]


DATASETS: dict[str, DatasetEntry] = {
    "glyphs": DatasetEntry(
        "handwritten characters drawn from Hershey stroke fonts (embedded, built on first use)",
        False,
        lambda spec: load_glyphs(spec.image_size, seed=spec.seed),
    ),
    "omniglot": DatasetEntry(
        "Omniglot from its zip files in data.root (e.g. ../shared/data/omniglot)",
        True,
        lambda spec: load_omniglot(str(spec.root), spec.image_size),
    ),
    "folder": DatasetEntry(
        "any image folder data.root/<class>/<images> (or data.root/{train,val,test}/<class>/...)",
        True,
        lambda spec: load_image_folder(str(spec.root), spec.image_size, spec.channels, spec.invert),
    ),
}


def load_dataset(spec: DataSpec) -> DataSplits:
    """Loads (building or reading the cache as needed) the data set a spec names."""
    entry = DATASETS.get(spec.name)
    if entry is None:
        raise MetaschedError(f"unknown data set {spec.name!r}; choose one of {', '.join(DATASETS)}")
    if entry.needs_root and not spec.root:
        raise MetaschedError(f"data set {spec.name!r} needs a location; set data.root=PATH")
    splits = entry.load(spec)
    if splits.train.image_shape[0] != spec.channels:
        raise MetaschedError(
            f"data set {spec.name!r} has {splits.train.image_shape[0]} channel(s) but"
            f" data.channels={spec.channels}; set data.channels={splits.train.image_shape[0]}"
        )
    return splits
