"""Focal sampling: hard tasks more often (the focal weight of Lin et al., ICCV 2017)."""

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
    draw,
)


@dataclass(frozen=True)
class FocalOptions:
    """Settings of focal sampling (``scheduler.focal``): ``gamma``, the focusing exponent."""

    gamma: float = 2.0

    def __post_init__(self) -> None:
        if self.gamma < 0:
            raise MetaschedError("scheduler.focal.gamma must be >= 0")


def focal_weight(losses: torch.Tensor, gamma: float) -> torch.Tensor:
    """(1 - p)^γ with p = exp(-L): the focal loss's modulating factor, p being the task's
    "probability of being right" implied by its loss."""
    return (-torch.expm1(-losses.double().clamp_min(0))).pow(gamma)


class FocalScheduler(TaskScheduler):
    """Draws B candidates without replacement with probability ∝ (1 - exp(-L_i))^γ.

    The focal loss (Lin et al., "Focal loss for dense object detection", ICCV 2017)
    down-weights well-classified examples by (1 - p)^γ. Applied to tasks, as the ATS paper's
    "focal loss" baseline: a task's p is exp(-L) of its adapted query loss, and the modulating
    factor becomes its sampling weight, so hard (high-loss) tasks are drawn more often. γ = 0
    is uniform sampling. (BASS's code instead swaps the query cross-entropy for an
    example-level focal loss; the task-level form keeps the method a scheduler.)
    """

    name = "focal"
    measures = Measure.LOSSES
    Options = FocalOptions

    def choose(
        self, pool: Candidates, batch_size: int, rng: np.random.Generator, services: Services
    ) -> Selection:
        weight = focal_weight(pool.require("stats").query_loss, self.options.gamma)
        probabilities = weight / weight.sum() if weight.sum() > 0 else torch.ones_like(weight)
        probabilities = probabilities / probabilities.sum()
        return Selection(draw(probabilities, batch_size, False, rng), probabilities)
