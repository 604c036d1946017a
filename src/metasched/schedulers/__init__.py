"""Task schedulers, one file each behind the contract of :mod:`metasched.schedulers.base`.

Adding a scheduler means one new file with a :class:`TaskScheduler` subclass and one entry in
:data:`SCHEDULERS`; the training loop and the config need no edit.
"""

from metasched.schedulers.agreement import AgreementOptions, AgreementScheduler
from metasched.schedulers.amortised import AmortisedOptions, AmortisedScheduler
from metasched.schedulers.ats import ATSNetwork, ATSOptions, ATSScheduler
from metasched.schedulers.base import (
    Candidates,
    Feedback,
    Measure,
    NoOptions,
    SchedulerSetup,
    Selection,
    Services,
    TaskScheduler,
)
from metasched.schedulers.bass import BASSOptions, BASSScheduler
from metasched.schedulers.buffer import BufferOptions, BufferScheduler
from metasched.schedulers.daml import DAMLOptions, DAMLScheduler
from metasched.schedulers.focal import FocalOptions, FocalScheduler
from metasched.schedulers.gated import GatedOptions, GatedScheduler
from metasched.schedulers.gcp import GCPOptions, GCPScheduler
from metasched.schedulers.greedy import GreedyScheduler
from metasched.schedulers.oracle import OracleScheduler
from metasched.schedulers.paml import PAMLOptions, PAMLScheduler
from metasched.schedulers.proxy import ProxyOptions, ProxyScheduler
from metasched.schedulers.spl import SPLOptions, SPLScheduler
from metasched.schedulers.uniform import UniformScheduler

#: The results version of what every scheduler shares (drawing, top-k, the pool's layout): bump
#: it in the commit that changes a number a run records; each scheduler has its own
#: ``results_version`` for its file (tests/golden replays short runs and fails otherwise).
RESULTS_VERSION = 1

#: Every scheduler by its config name (``scheduler.name``).
SCHEDULERS: dict[str, type[TaskScheduler]] = {
    cls.name: cls
    for cls in (
        UniformScheduler,
        OracleScheduler,
        GreedyScheduler,
        SPLScheduler,
        FocalScheduler,
        GCPScheduler,
        DAMLScheduler,
        PAMLScheduler,
        ATSScheduler,
        BASSScheduler,
        AgreementScheduler,
        AmortisedScheduler,
        BufferScheduler,
        GatedScheduler,
        ProxyScheduler,
    )
}

__all__ = [
    "RESULTS_VERSION",
    "SCHEDULERS",
    "ATSNetwork",
    "ATSOptions",
    "ATSScheduler",
    "AgreementOptions",
    "AgreementScheduler",
    "AmortisedOptions",
    "AmortisedScheduler",
    "BASSOptions",
    "BASSScheduler",
    "BufferOptions",
    "BufferScheduler",
    "Candidates",
    "DAMLOptions",
    "DAMLScheduler",
    "Feedback",
    "FocalOptions",
    "FocalScheduler",
    "GCPOptions",
    "GCPScheduler",
    "GatedOptions",
    "GatedScheduler",
    "GreedyScheduler",
    "Measure",
    "NoOptions",
    "OracleScheduler",
    "PAMLOptions",
    "PAMLScheduler",
    "ProxyOptions",
    "ProxyScheduler",
    "SPLOptions",
    "SPLScheduler",
    "SchedulerSetup",
    "Selection",
    "Services",
    "TaskScheduler",
    "UniformScheduler",
]
