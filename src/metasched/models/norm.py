"""Batch normalisation with the statistics of each task's own batch (no running statistics)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def task_batch_norm(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, tasks: int, eps: float = 1e-5
) -> torch.Tensor:
    """Normalises ``x`` (tasks * n, C, ...) with per-task, per-channel batch statistics.

    With ``tasks == 1`` this is ``F.batch_norm`` in training mode without running statistics,
    as the reference code uses for every forward pass (meta-training and evaluation alike).
    """
    if tasks == 1:
        return F.batch_norm(x, None, None, weight, bias, training=True, eps=eps)
    grouped = x.reshape(tasks, -1, *x.shape[1:])
    dims = (1, *range(3, grouped.dim()))
    var, mean = torch.var_mean(grouped, dim=dims, keepdim=True, correction=0)
    shape = (1, 1, -1) + (1,) * (grouped.dim() - 3)
    normed = (grouped - mean) * torch.rsqrt(var + eps) * weight.view(shape) + bias.view(shape)
    return normed.reshape(x.shape)


class TaskBatchNorm(nn.Module):
    """Affine batch normalisation that always uses the current task's batch statistics."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor, tasks: int = 1) -> torch.Tensor:
        return task_batch_norm(x, self.weight, self.bias, tasks, self.eps)


def cancelled_parameters(model: nn.Module) -> set[str]:
    """Parameters whose gradient is identically zero by structure: the bias of a layer whose
    output goes straight into batch norm (which subtracts the batch mean, bias included).
    Modules list theirs in a ``cancelled_by_norm`` attribute."""
    names = set()
    for module_name, module in model.named_modules():
        for name in getattr(module, "cancelled_by_norm", ()):
            names.add(f"{module_name}.{name}" if module_name else name)
    return names
