"""Data sets as pools (images by class, compounds by assay) split into meta-train/val/test."""

from metasched.data.pool import AssayPool, ClassPool, DataSplits
from metasched.data.registry import DATASETS, DataSpec, load_dataset

__all__ = ["DATASETS", "AssayPool", "ClassPool", "DataSpec", "DataSplits", "load_dataset"]
