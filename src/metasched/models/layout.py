"""Memory layout of image activations: channels-last on CPUs, except under double backward."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

_state = threading.local()


@contextmanager
def nchw_for_double_backward(enabled: bool = True) -> Iterator[None]:
    """Forward passes inside keep NCHW order (when ``enabled``).

    Meant for the passes a second-order inner loop differentiates twice: PyTorch's double
    backward through channels-last activations mixes memory formats and runs slower than NCHW
    (second-order MAML: 0.81 s against 0.63 s per uniform iteration at 84x84).
    """
    outer = getattr(_state, "nchw", False)
    _state.nchw = outer or enabled
    try:
        yield
    finally:
        _state.nchw = outer


def cpu_layout(x: torch.Tensor, channels_last: bool = True) -> torch.Tensor:
    """``x`` in channels-last order on CPUs, where Conv4 then trains 1.6x and infers 2.2x
    faster at 84x84 (NCHW max-pooling is slow there; docs/benchmarks.md). GPUs keep NCHW
    (unmeasured there), and so do passes inside :func:`nchw_for_double_backward`. Grouped
    task batching never uses it: channels-last grouped convolutions on CPU gave weight
    gradients 0.2% off the per-task loop's (torch 2.13)."""
    if not channels_last or x.device.type != "cpu" or getattr(_state, "nchw", False):
        return x
    return x.contiguous(memory_format=torch.channels_last)
