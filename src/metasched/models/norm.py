"""Batch normalisation with the statistics of each task's own batch (no running statistics)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def task_batch_norm(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5
) -> torch.Tensor:
    """Normalises ``x`` (N, T * C, ...) with per-task, per-channel batch statistics.

    Task t's channels are group t of the channel dimension, and ``weight`` and ``bias`` are
    (T, C). Each (task, channel) pair is one channel of ``F.batch_norm`` in training mode
    without running statistics, as the reference code uses for every forward pass
    (meta-training and evaluation alike).
    """
    return F.batch_norm(x, None, None, weight.flatten(), bias.flatten(), training=True, eps=eps)


class TaskBatchNorm(nn.Module):
    """The affine parameters of :func:`task_batch_norm`; calling it normalises one task."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return task_batch_norm(x, self.weight.unsqueeze(0), self.bias.unsqueeze(0), self.eps)


def cancelled_parameters(model: nn.Module) -> set[str]:
    """Parameters whose gradient is identically zero by structure: the bias of a layer whose
    output goes straight into batch norm (which subtracts the batch mean, bias included).
    Modules list theirs in a ``cancelled_by_norm`` attribute."""
    names = set()
    for module_name, module in model.named_modules():
        for name in getattr(module, "cancelled_by_norm", ()):
            names.add(f"{module_name}.{name}" if module_name else name)
    return names
