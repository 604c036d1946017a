"""The pieces of the grouped computation: T tasks at once, each with its own parameters.

Every model runs one way: parameters carry a leading task dimension T and inputs are stacked
(T, N, ...). One task is the case T = 1, so a per-task loop, a grouped batch and a rank's share
of tasks are three ways of running the same code.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

Params = dict[str, torch.Tensor]


class GroupedModule(Protocol):
    """A module whose one computation takes per-task parameters (leading dimension T)."""

    def grouped(self, params: Params, x: torch.Tensor) -> torch.Tensor: ...

    def named_parameters(self) -> object: ...


def task_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """(T, N, D) inputs through T linear maps: weight (T, out, D), bias (T, out).

    One task takes ``F.linear``, the kernel ``nn.Linear`` uses, so T = 1 gives exactly the
    per-task numbers; several take one batched matrix product.
    """
    if x.shape[0] == 1:  # squeeze, not [0]: indexing's backward allocates a zero tensor
        return F.linear(x.squeeze(0), weight.squeeze(0), bias.squeeze(0)).unsqueeze(0)
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


def shared_weights(module: nn.Module, x: torch.Tensor, item_dims: int) -> torch.Tensor:
    """``module.grouped`` on the module's own weights: ``x`` is (N, *item) for one task, or
    (T, N, *item) for T tasks that share the weights (each keeps its own batch statistics)."""
    single = x.dim() == item_dims + 1
    batch = x.unsqueeze(0) if single else x
    tasks = batch.shape[0]
    params = {n: p.expand(tasks, *p.shape) for n, p in module.named_parameters()}
    out = module.grouped(params, batch)  # type: ignore[operator]
    return out.squeeze(0) if single else out
