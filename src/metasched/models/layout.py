"""Memory layout of image activations: channels-last on CPUs unless asked to keep NCHW."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

_state = threading.local()


@contextmanager
def keep_nchw(enabled: bool = True) -> Iterator[None]:
    """Forward passes inside keep NCHW order (when ``enabled``).

    The learners use it for the passes a second-order inner loop differentiates twice:
    PyTorch's double backward through channels-last activations mixes memory formats, and its
    element-wise kernels then run many times slower than in NCHW. Benchmarks use it to time
    the NCHW layout.
    """
    outer = getattr(_state, "nchw", False)
    _state.nchw = outer or enabled
    try:
        yield
    finally:
        _state.nchw = outer


def cpu_layout(x: torch.Tensor) -> torch.Tensor:
    """``x`` in channels-last order on CPUs, where ANIL then trains 1.5x faster at 84x84 (NCHW
    max-pooling is slow there; ``benchmarks/cpu_settings.py``). GPUs keep NCHW (unmeasured
    there), and so do passes inside :func:`keep_nchw`. Grouped task batching
    never uses it: channels-last grouped convolutions on CPU moved per-layer gradient
    statistics by 0.2% from the per-task loop's (torch 2.13)."""
    if x.device.type != "cpu" or getattr(_state, "nchw", False):
        return x
    return x.contiguous(memory_format=torch.channels_last)
