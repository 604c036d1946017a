"""Data sets as class pools split into meta-train / meta-val / meta-test."""

from metasched.data.pool import ClassPool, DataSplits
from metasched.data.registry import DATASETS, load_dataset

__all__ = ["DATASETS", "ClassPool", "DataSplits", "load_dataset"]
