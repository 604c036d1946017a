"""What this CPU does fast, for settings whose speed depends on it.

``scheduler.pool_precision=bf16`` pays only where the CPU has bfloat16 instructions (AVX-512
BF16 or AMX): on an AMD EPYC with them, bf16 pool scoring took 6.05 uniform iterations
against fp32's 7.14 at 84x84; on an Intel Xeon without them, 11.06 against 7.05
(docs/benchmarks.md). Linux reports the instructions in ``/proc/cpuinfo``.
"""

from __future__ import annotations

import os
import platform
from functools import cache
from pathlib import Path

BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def _cpuinfo(field: str) -> str | None:
    """The first value of ``field`` in Linux's ``/proc/cpuinfo`` (None where it cannot be
    read)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith(field):
            return line.partition(":")[2].strip()
    return None


@cache
def cpu_flags() -> frozenset[str]:
    """The instruction-set flags Linux reports (empty where it cannot be read)."""
    return frozenset((_cpuinfo("flags") or "").split())


@cache
def cpu_name() -> str:
    """The CPU's model name, for benchmark tables."""
    return _cpuinfo("model name") or platform.processor() or platform.machine() or "unknown CPU"


@cache
def cpu_vendor() -> str:
    """The CPU's vendor (GenuineIntel, AuthenticAMD, ...), else the machine's architecture."""
    return _cpuinfo("vendor_id") or platform.machine() or "unknown"


def native_bf16() -> bool | None:
    """Whether the CPU has bfloat16 instructions; ``None`` where that cannot be told."""
    flags = cpu_flags()
    if not flags:
        return None
    return any(flag in flags for flag in BF16_FLAGS)


def bf16_advice(device_type: str, pool_precision: str) -> str | None:
    """A warning for bf16 pool scoring on a CPU without bfloat16 instructions, else None."""
    if device_type != "cpu" or pool_precision != "bf16" or native_bf16() is not False:
        return None
    return (
        f"scheduler.pool_precision=bf16 on a CPU without bfloat16 instructions ({cpu_name()}):"
        " measured 1.6x slower than fp32 on such a CPU; set scheduler.pool_precision=fp32"
    )


def machine() -> dict[str, object]:
    """The CPU, its core count and the 1-minute load average (None where the platform has
    none): what a wall time was measured on, for a run's provenance."""
    try:
        load: float | None = round(os.getloadavg()[0], 1)
    except OSError:
        load = None
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "load": load}


def busy_machine() -> str | None:
    """What keeps the machine busy when other work occupies about every core (a load average
    within half a core of the core count), else None."""
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:  # no load average on this platform
        return None
    return f"the load average is {load:.1f} on {cores} cores" if load >= cores - 0.5 else None
