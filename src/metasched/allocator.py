"""Keeping freed CPU memory in the process, so that large tensors do not page-fault every time.

glibc serves allocations above its mmap threshold (128 KiB, rising to at most 32 MiB) with
fresh ``mmap`` pages and hands them back to the kernel on ``free``. A Conv4 activation at 84x84
for one task is about 70 MiB, so every forward pass then zero-fills and faults in hundreds of
MiB anew: on the 2-core development machine that made an 84x84 ATS iteration 1.8x slower, most
of it spent in the kernel (``benchmarks/cpu_settings.py``). Raising the mmap and trim
thresholds keeps freed blocks in the heap for the next pass, which is what jemalloc or
tcmalloc would do, without a new dependency.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
LARGEST = 2**31 - 1  # mallopt takes a C int


@cache
def retain_freed_cpu_memory() -> bool:
    """Tells glibc's malloc to reuse freed memory; False where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 -- present in glibc only
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_MMAP_THRESHOLD, LARGEST)) and bool(mallopt(M_TRIM_THRESHOLD, LARGEST))
