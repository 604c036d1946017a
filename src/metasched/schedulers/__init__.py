"""Task schedulers: uniform sampling, the noise oracle, and ATS."""

from metasched.schedulers.ats import ATSNetwork, ATSScheduler
from metasched.schedulers.base import Pool, Selection, TaskScheduler
from metasched.schedulers.uniform import OracleScheduler, UniformScheduler

__all__ = [
    "ATSNetwork",
    "ATSScheduler",
    "OracleScheduler",
    "Pool",
    "Selection",
    "TaskScheduler",
    "UniformScheduler",
]
