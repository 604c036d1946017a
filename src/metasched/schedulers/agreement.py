"""Gradient agreement: train on the candidates whose support and query gradients agree."""

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
    top_k,
)


@dataclass(frozen=True)
class AgreementOptions:
    """Settings of the agreement scheduler (``scheduler.agreement``).

    Attributes:
        temperature: 0 takes the B most agreeing candidates; above 0 draws B without
            replacement with probabilities softmax(standardised agreement / temperature).
    """

    temperature: float = 0.0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise MetaschedError("scheduler.agreement.temperature must be >= 0")


def agreement(cosine: torch.Tensor, support_norm: torch.Tensor) -> torch.Tensor:
    """(P,) the mean over layers of the support/query gradient cosine, over the layers whose
    gradient is not zero by structure (zero for every candidate)."""
    live = (support_norm > 0).any(dim=0)
    return cosine[:, live].mean(dim=1) if live.any() else torch.zeros(cosine.shape[0])


class AgreementScheduler(TaskScheduler):
    """The B candidates with the highest support/query gradient agreement at θ0.

    Our own scheduler, from the results of issue 9 (docs/results.md): ATS's learned policy
    gets its selectivity from the gradient-similarity input (``ats-gradients`` matches full
    ATS, ``ats-loss`` does not), yet half of its cost is learning that policy (the scheduler's
    warm-up, the look-ahead and the reward tasks). ATS's own analysis (its Proposition 1)
    says why the agreement matters: to first order, one inner step lowers a task's query loss
    by α ⟨∇L_support, ∇L_query⟩, so a task whose support gradient points away from its query
    gradient teaches the meta-model the wrong adaptation, which is what corrupted support
    labels do. This scheduler ranks the pool by that agreement directly (the mean per-layer
    cosine, ``Measure.GRADIENTS``) and needs no network, no reward and no validation data.
    With ``scheduler.gradient_layers=last`` it compares the last layers only, which is cheaper.
    """

    name = "agreement"
    measures = Measure.LOSSES | Measure.GRADIENTS
    Options = AgreementOptions

    def choose(
        self, pool: Candidates, batch_size: int, rng: np.random.Generator, services: Services
    ) -> Selection:
        stats = pool.require("stats")
        support_norm, _, _ = stats.gradient_terms()
        value = agreement(stats.cosine, support_norm)
        temperature = self.options.temperature
        if temperature == 0:
            return Selection(top_k(value, batch_size))
        centred = value - value.mean()
        scaled = centred / (centred.pow(2).mean().sqrt() + 1e-6) / temperature
        probabilities = torch.softmax(scaled.double(), dim=0)
        return Selection(
            draw(probabilities, batch_size, False, rng), probabilities, policy=probabilities.float()
        )
