"""DAML: difficulty-aware meta-learning (Li, Yu and Heng, MICCAI 2020)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from metasched.errors import MetaschedError
from metasched.schedulers.base import (
    Candidates,
    Measure,
    Selection,
    Services,
    TaskScheduler,
    uniform_draw,
)


@dataclass(frozen=True)
class DAMLOptions:
    """Settings of DAML (``scheduler.daml``): ``gamma``, the focusing exponent."""

    gamma: float = 2.0

    def __post_init__(self) -> None:
        if self.gamma < 0:
            raise MetaschedError("scheduler.daml.gamma must be >= 0")


def difficulty_weights(losses: torch.Tensor, gamma: float) -> np.ndarray:
    """d/dL of the task-level focal loss -(1 - p)^γ log p with p = exp(-L), i.e. of
    (1 - p)^γ L: (1 - p)^γ + γ L p (1 - p)^(γ - 1). Meta-training on Σ w_i L_i with these
    (constant) w_i follows the gradient of DAML's meta-loss."""
    L = losses.double().clamp_min(0)
    p = torch.exp(-L)
    hard = -torch.expm1(-L)  # 1 - p, accurate for small L
    weights = hard.pow(gamma) + gamma * L * p * hard.pow(gamma - 1) if gamma else torch.ones_like(L)
    return weights.numpy()


class DAMLScheduler(TaskScheduler):
    """Uniform tasks, difficulty-weighted meta-loss.

    DAML (Li et al., "Difficulty-aware meta-learning for rare disease diagnosis", MICCAI
    2020) replaces the mean of the tasks' query losses by the sum of their focal losses
    -(1 - p_i)^γ log p_i with p_i = exp(-L_i), so hard tasks weigh more in the meta-update.
    The tasks are drawn uniformly (with P = B this is the meta-batch of uniform sampling);
    the weights are the focal loss's derivatives at each task's loss (a constant per task),
    divided by B so that at γ = 0 the meta-loss is the usual mean.
    """

    name = "daml"
    measures = Measure.LOSSES
    Options = DAMLOptions
    needs_larger_pool = False

    def choose(
        self, pool: Candidates, batch_size: int, rng: np.random.Generator, services: Services
    ) -> Selection:
        indices = uniform_draw(pool.size, batch_size, rng)
        losses = pool.require("stats").query_loss[torch.from_numpy(indices)]
        weights = difficulty_weights(losses, self.options.gamma) / batch_size
        return Selection(
            indices,
            torch.full((pool.size,), 1.0 / pool.size),
            weights=weights,
            diagnostics={"weight_spread": float(weights.max() / max(weights.min(), 1e-12))},
        )
