"""Task schedulers: uniform sampling (and, building on the same interface, ATS)."""

from metasched.schedulers.base import Selection, TaskScheduler
from metasched.schedulers.uniform import UniformScheduler

__all__ = ["Selection", "TaskScheduler", "UniformScheduler"]
