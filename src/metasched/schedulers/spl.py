"""Self-paced learning (Kumar, Packer and Koller, NeurIPS 2010), applied to tasks."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from metasched.errors import MetaschedError
from metasched.schedulers.base import Candidates, Measure, Selection, Services, TaskScheduler


@dataclass(frozen=True)
class SPLOptions:
    """Settings of SPL (the ``scheduler.spl`` section).

    Attributes:
        start: the fraction of the pool admitted at the start (the easiest ones).
        end: the fraction admitted once ``ramp`` of the meta-updates are done.
        ramp: the fraction of training over which the admitted fraction grows linearly.
    """

    start: float = 0.2
    end: float = 1.0
    ramp: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.start <= self.end <= 1:
            raise MetaschedError("scheduler.spl needs 0 < start <= end <= 1")
        if not 0 < self.ramp <= 1:
            raise MetaschedError("scheduler.spl.ramp must lie in (0, 1]")


class SPLScheduler(TaskScheduler):
    """Easy tasks first, harder ones admitted as training goes on.

    SPL minimises Σ_i v_i L_i − λ Σ_i v_i over binary v: a sample takes part iff its loss is
    below λ, and λ grows during training. Here a sample is a candidate task and its loss the
    adapted query loss. Simplification: the threshold is a quantile of the pool's losses rather
    than an absolute λ, so it needs no tuning to the loss scale (which shrinks as the model
    learns): the easiest ``start`` fraction of the pool is admitted at first, growing linearly
    to ``end``. The B tasks are drawn uniformly among the admitted ones (the ``v_i = 1`` set);
    when fewer than B are admitted, the B easiest are taken.
    """

    name = "spl"
    measures = Measure.LOSSES
    Options = SPLOptions

    def admitted_fraction(self, progress: float) -> float:
        o = self.options
        return o.start + (o.end - o.start) * min(1.0, progress / o.ramp)

    def choose(
        self, pool: Candidates, batch_size: int, rng: np.random.Generator, services: Services
    ) -> Selection:
        losses = pool.require("stats").query_loss.numpy()
        count = max(batch_size, math.ceil(self.admitted_fraction(pool.progress) * pool.size))
        admitted = np.argsort(losses, kind="stable")[:count]
        probabilities = torch.zeros(pool.size, dtype=torch.float64)
        probabilities[torch.from_numpy(admitted)] = 1.0 / count
        return Selection(rng.choice(admitted, batch_size, replace=False), probabilities)
