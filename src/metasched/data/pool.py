"""Class pools: images grouped by class, stored compactly as uint8."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from metasched.errors import MetaschedError


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

    def class_images(self, label: int) -> np.ndarray:
        """All images of class ``label``."""
        return self.images[self.starts[label] : self.starts[label + 1]]


@dataclass(frozen=True)
class DataSplits:
    """The meta-train, meta-validation and meta-test class pools of one data set."""

    train: ClassPool
    val: ClassPool
    test: ClassPool

    def __getitem__(self, split: str) -> ClassPool:
        if split not in ("train", "val", "test"):
            raise MetaschedError(f"unknown split {split!r}; use train, val or test")
        pool: ClassPool = getattr(self, split)
        return pool

    def describe(self) -> str:
        """One line per split: classes, images and groups."""
        lines = []
        for split in ("train", "val", "test"):
            pool = self[split]
            lines.append(
                f"{split:>5}: {pool.num_classes:5d} classes, {len(pool.images):6d} images,"
                f" groups: {', '.join(sorted(set(pool.groups)))}"
            )
        return "\n".join(lines)
