"""Task schedulers, one file each behind the contract of :mod:`metasched.schedulers.base`.

Adding a scheduler means one new file with a :class:`TaskScheduler` subclass and one entry in
:data:`SCHEDULERS`; the training loop and the config need no edit.
"""

from metasched.schedulers.ats import ATSNetwork, ATSOptions, ATSScheduler
from metasched.schedulers.base import (
    Feature,
    NoOptions,
    Pool,
    PoolServices,
    SchedulerSetup,
    Selection,
    TaskScheduler,
    Trained,
)
from metasched.schedulers.oracle import OracleScheduler
from metasched.schedulers.uniform import UniformScheduler

#: Every scheduler by its config name (``scheduler.name``).
SCHEDULERS: dict[str, type[TaskScheduler]] = {
    cls.name: cls
    for cls in (
        UniformScheduler,
        OracleScheduler,
        ATSScheduler,
    )
}

__all__ = [
    "SCHEDULERS",
    "ATSNetwork",
    "ATSOptions",
    "ATSScheduler",
    "Feature",
    "NoOptions",
    "OracleScheduler",
    "Pool",
    "PoolServices",
    "SchedulerSetup",
    "Selection",
    "TaskScheduler",
    "Trained",
    "UniformScheduler",
]
