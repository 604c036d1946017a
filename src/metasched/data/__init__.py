"""Data sets as pools (images by class, compounds by assay) split into meta-train/val/test."""

from metasched.data.pool import AssayPool, ClassPool, DataSplits
from metasched.data.registry import DATASETS, DataSpec, load_dataset

#: The results version of this layer: bump it in the commit that changes the arrays a data set
#: loads (images, fingerprints, values, splits), i.e. any number a run records (tests/golden
#: replays short runs and fails otherwise).
RESULTS_VERSION = 1

__all__ = [
    "DATASETS",
    "RESULTS_VERSION",
    "AssayPool",
    "ClassPool",
    "DataSpec",
    "DataSplits",
    "load_dataset",
]
