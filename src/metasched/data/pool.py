"""Pools of examples grouped by task unit: images by class (uint8), compounds by assay
(bit-packed fingerprints), and the meta-train/val/test splits of one data set."""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from metasched.errors import MetaschedError


def read_rows(array: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """``array[indices]`` along the first axis, as a new array.

    Rows of a memory-mapped file are read with ``pread`` instead of through the mapping: the
    kernel maps whole read-ahead windows around each page a mapping touches (0.7 GB of
    miniImageNet's training file after six iterations), and those pages would stay in the
    process's resident memory, growing with the data set over a long run.
    """
    if not isinstance(array, np.memmap) or not isinstance(array.base, mmap.mmap):
        return np.asarray(array[indices])  # in memory, or a view of a mapping
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    out = np.empty((len(indices), *array.shape[1:]), array.dtype)
    if len(indices) and (indices.min() < 0 or indices.max() >= len(array)):
        raise IndexError(f"row index out of range for {len(array)} rows")
    size = out[0].nbytes if len(out) else 0
    buffer = memoryview(out.reshape(-1).view(np.uint8))
    descriptor = os.open(str(array.filename), os.O_RDONLY)
    try:
        for position, row in enumerate(indices.tolist()):
            chunk = buffer[position * size : (position + 1) * size]
            if os.preadv(descriptor, [chunk], array.offset + row * size) != size:
                raise OSError(f"{array.filename} is shorter than its header says; prepare it again")
    finally:
        os.close(descriptor)
    return out


@dataclass(frozen=True)
class ClassPool:
    """Images of several classes, sorted by class.

    Attributes:
        images: uint8 array (num_images, channels, height, width), grouped by class.
        starts: int64 array (num_classes + 1,); class ``c`` owns ``images[starts[c]:starts[c+1]]``.
        class_names: one name per class, e.g. ``"gothiceng/A"``.
        groups: the group (alphabet) of each class, e.g. ``"gothiceng"``.
    """

    images: np.ndarray
    starts: np.ndarray
    class_names: tuple[str, ...]
    groups: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError("ClassPool.images must be a uint8 array (N, C, H, W)")
        if len(self.starts) != len(self.class_names) + 1 or len(self.groups) != len(
            self.class_names
        ):
            raise ValueError("ClassPool.starts, class_names and groups disagree in length")
        _check_starts(self.starts, len(self.images), "ClassPool", "images")

    @classmethod
    def from_class_arrays(
        cls, arrays: list[np.ndarray], class_names: list[str], groups: list[str]
    ) -> ClassPool:
        """Builds a pool from one (n_c, C, H, W) uint8 array per class."""
        counts = [len(a) for a in arrays]
        starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        images = np.concatenate(arrays) if arrays else np.zeros((0, 1, 1, 1), np.uint8)
        return cls(images, starts, tuple(class_names), tuple(groups))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        channels, height, width = self.images.shape[1:]
        return int(channels), int(height), int(width)

    def counts(self) -> np.ndarray:
        """Number of images of each class."""
        return np.diff(self.starts)

    def take(self, indices: np.ndarray) -> np.ndarray:
        """The images at these indices, uint8 (len(indices), C, H, W) (see :func:`read_rows`)."""
        return read_rows(self.images, indices)

    def class_images(self, label: int) -> np.ndarray:
        """All images of class ``label``."""
        return self.images[self.starts[label] : self.starts[label + 1]]

    def describe(self) -> str:
        """Classes, images and groups, in one line."""
        return (
            f"{self.num_classes:5d} classes, {len(self.images):6d} images,"
            f" groups: {', '.join(sorted(set(self.groups)))}"
        )

    def check_settings(self, name: str, channels: int, image_size: int) -> None:
        """Rejects data settings that contradict the images (their channels and size)."""
        have, height, _ = self.image_shape
        if have != channels or height != image_size:
            raise MetaschedError(
                f"data set {name!r} has {have}-channel {height}x{height} images but the config"
                f" says data.channels={channels} data.image_size={image_size}; set"
                f" data.channels={have} data.image_size={height}"
            )


def _check_starts(starts: np.ndarray, rows: int, kind: str, what: str) -> None:
    """Group boundaries must start at 0, never decrease and end at the last row: a damaged
    file read without this check would draw rows of one group as another's."""
    if len(starts) == 0 or starts[0] != 0 or starts[-1] != rows or (np.diff(starts) < 0).any():
        raise ValueError(f"{kind}.starts are not boundaries of its {rows} {what}")


@dataclass(frozen=True)
class AssayPool:
    """Measured compounds of several assays, sorted by assay.

    One row is one (assay, compound) measurement. Fingerprints are stored once per distinct
    compound, bit-packed, and unpacked to float32 only for the rows an episode draws.

    Attributes:
        fingerprints: uint8 array (num_compounds, bits / 8), ``np.packbits`` of each compound's
            fingerprint bits.
        compounds: int64 array (num_rows,): the compound (fingerprint row) of each measurement.
        targets: float32 array (num_rows,): the measured values (e.g. pIC50).
        roles: int8 array (num_rows,): the source's own support/query flag of each row: 0 for
            its training (support) rows, 1 for its test (query) rows, -1 where it has none.
        starts: int64 array (num_assays + 1,); assay ``a`` owns rows ``starts[a]:starts[a+1]``.
        assay_ids: one id per assay, e.g. ``"CHEMBL1006005"``.
        assay_types: one type per assay (FS-Mol's B, F, A, ...; ``""`` when unknown).
        bits: the fingerprint length.
    """

    fingerprints: np.ndarray
    compounds: np.ndarray
    targets: np.ndarray
    roles: np.ndarray
    starts: np.ndarray
    assay_ids: tuple[str, ...]
    assay_types: tuple[str, ...]
    bits: int

    def __post_init__(self) -> None:
        rows = len(self.targets)
        if self.fingerprints.dtype != np.uint8 or self.fingerprints.ndim != 2:
            raise ValueError("AssayPool.fingerprints must be a packed uint8 array (M, bits / 8)")
        if self.fingerprints.shape[1] * 8 != self.bits:
            raise ValueError("AssayPool.fingerprints do not hold `bits` bits per compound")
        if len(self.compounds) != rows or len(self.roles) != rows:
            raise ValueError("AssayPool.compounds, targets and roles disagree in length")
        if len(self.starts) != len(self.assay_ids) + 1 or len(self.assay_types) != len(
            self.assay_ids
        ):
            raise ValueError("AssayPool.starts, assay_ids and assay_types disagree in length")
        _check_starts(self.starts, rows, "AssayPool", "rows")
        if rows and not 0 <= int(self.compounds.min()) <= int(self.compounds.max()) < len(
            self.fingerprints
        ):
            raise ValueError("AssayPool.compounds name fingerprint rows that do not exist")
        if not np.isfinite(self.targets).all():
            raise ValueError("AssayPool.targets hold NaN or infinite values")

    @property
    def num_assays(self) -> int:
        return len(self.assay_ids)

    @property
    def num_compounds(self) -> int:
        return len(self.fingerprints)

    def counts(self) -> np.ndarray:
        """Number of measurements of each assay."""
        return np.diff(self.starts)

    def rows(self, assay: int) -> np.ndarray:
        """The row indices of assay ``assay``."""
        return np.arange(self.starts[assay], self.starts[assay + 1])

    def inputs(self, rows: np.ndarray) -> np.ndarray:
        """float32 (len(rows), bits): the fingerprints of those rows, unpacked."""
        packed = read_rows(self.fingerprints, self.compounds[rows])
        return np.unpackbits(packed, axis=1, count=self.bits).astype(np.float32)

    def describe(self) -> str:
        """Assays, measurements and compounds, in one line."""
        counts = self.counts()
        sizes = f", sizes {counts.min()}..{counts.max()} (median {int(np.median(counts))})"
        return (
            f"{self.num_assays:5d} assays, {len(self.targets):7d} measurements,"
            f" {self.num_compounds:7d} compounds{sizes if len(counts) else ''}"
        )

    def check_settings(self, name: str, channels: int, image_size: int) -> None:
        """Nothing to check: image settings do not apply to assays."""


Pool = TypeVar("Pool", ClassPool, AssayPool)


@dataclass(frozen=True)
class DataSplits(Generic[Pool]):
    """The meta-train, meta-validation and meta-test pools of one data set.

    ``notes`` say what loading dropped or changed, and why (e.g. unparsable SMILES).
    """

    train: Pool
    val: Pool
    test: Pool
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        pools = (self.train, self.val, self.test)
        if len({type(pool) for pool in pools}) > 1:
            raise ValueError("the splits hold different kinds of data")
        shapes = {p.image_shape if isinstance(p, ClassPool) else p.bits for p in pools}
        if len(shapes) > 1:
            raise ValueError(f"the splits hold inputs of different shapes ({sorted(shapes)})")

    def __getitem__(self, split: str) -> Pool:
        if split not in ("train", "val", "test"):
            raise MetaschedError(f"unknown split {split!r}; use train, val or test")
        pool: Pool = getattr(self, split)
        return pool

    def describe(self) -> str:
        """One line per split, then the notes."""
        lines = [f"{split:>5}: {self[split].describe()}" for split in ("train", "val", "test")]
        return "\n".join(lines + [f"note: {note}" for note in self.notes])
