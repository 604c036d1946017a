"""Gated: greedy low-loss selection, switched on only while its estimated gain exceeds its cost."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from metasched.errors import MetaschedError
from metasched.schedulers.base import (
    Candidates,
    Measure,
    Selection,
    Services,
    TaskScheduler,
    top_k,
)
from metasched.tasks.episode import Episode, TaskSource


@dataclass(frozen=True)
class GatedOptions:
    """Settings of the gated scheduler (``scheduler.gated``).

    Attributes:
        candidate_cost: the cost of measuring a candidate that is then not trained on, in
            trained tasks (the default is glyphs' figure: greedy with a pool of 4 for a batch
            of 2 costs 1.72 uniform iterations, so a rejected candidate costs 0.72 of a
            trained one; see docs/benchmarks.md).
        window: how many recent measured pools the noisy-share estimate pools the losses of
            (with 4 candidates a pool, 10 pools give 40 losses).
        check_every: while off, one pool in this many iterations is measured anyway, so that
            the estimate follows the training.
        separation: two loss clusters count as two only when their means lie this many pooled
            standard deviations apart; otherwise the noisy share is 0. The best split of one
            normal sample of 40 lies 2.8 apart at the median and 3.7 at the 99th percentile.
    """

    candidate_cost: float = 0.72
    window: int = 10
    check_every: int = 10
    separation: float = 3.5

    def __post_init__(self) -> None:
        if self.candidate_cost < 0 or self.separation < 0:
            raise MetaschedError("scheduler.gated.candidate_cost and separation must be >= 0")
        if self.window < 1 or self.check_every < 1:
            raise MetaschedError("scheduler.gated.window and check_every must be >= 1")


def noisy_share(losses: np.ndarray, separation: float) -> float:
    """The share of ``losses`` in the upper of two clearly separated clusters, else 0.

    The clusters are the best split of the sorted losses into a lower and an upper run (exact
    one-dimensional two-means); they count when their means differ by more than
    ``separation`` pooled standard deviations.

    Example:
        >>> noisy_share(np.array([0.1, 0.12, 2.0, 2.1, 1.9]), separation=3.5)
        0.6
        >>> noisy_share(np.array([0.1, 0.5, 0.9, 1.3]), separation=3.5)
        0.0
    """
    values = np.sort(losses[np.isfinite(losses)])
    n = len(values)
    if n < 3:
        return 0.0
    sums, squares = np.cumsum(values)[:-1], np.cumsum(values**2)[:-1]
    low = np.arange(1, n)  # the lower run's size at each split
    within = (squares - sums**2 / low) + (
        (values**2).sum() - squares - (values.sum() - sums) ** 2 / (n - low)
    )
    split = int(np.argmin(within)) + 1
    spread = math.sqrt(max(float(within[split - 1]), 0.0) / (n - 2))
    gap = values[split:].mean() - values[:split].mean()
    return (n - split) / n if gap > separation * spread else 0.0


class GatedScheduler(TaskScheduler):
    """Trains on the B lowest adapted query losses of P candidates while that pays, and on B
    uniform draws, measuring nothing, while it does not.

    A model of one iteration: of the B tasks a uniform draw trains on, a share f is harmful
    (noisy) and contributes nothing; selection removes them at c uniform iterations per
    iteration, c = 1 + (P − B) / B × ``candidate_cost``. Uniform sampling then gets (1 − f) B
    useful tasks per unit of compute and selection B / c, so selection pays when
    f > 1 − 1/c. The scheduler estimates f from the losses of the last ``window`` pools it
    measured (:func:`noisy_share`) and decides each iteration's mode before anything is
    drawn: on (draw P, measure their losses, train on the lowest B) or off (draw B, measure
    nothing, train on all of them). While off it still measures one pool in ``check_every``
    iterations. It starts on, to make its first estimates. Each iteration's record says
    whether it measured (``measured``: the loop's cost accounting reads it) and the estimate.
    In the spirit of switching importance sampling on only when its predicted speed-up exceeds
    its cost (Katharopoulos & Fleuret, ICML 2018).

    Example:
        >>> scheduler = GatedScheduler()
        >>> round(scheduler.threshold(pool_size=4, batch_size=2), 3)
        0.419
    """

    name = "gated"
    Options = GatedOptions
    has_light_iterations = True

    def __init__(self, options: GatedOptions | None = None, setup: Any = None) -> None:
        super().__init__(options, setup)
        self.recent: deque[np.ndarray] = deque(maxlen=self.options.window)
        self.share: float | None = None  # noisy_share of ``recent``, kept as it changes
        self.since_measured = 0
        self.measures = Measure.LOSSES

    def threshold(self, pool_size: int, batch_size: int) -> float:
        """The noisy share above which selection pays: 1 − 1/c."""
        cost = 1 + (pool_size - batch_size) / batch_size * self.options.candidate_cost
        return 1 - 1 / cost

    def _remember(self, losses: np.ndarray) -> None:
        """Adds a measured pool's losses to the window and estimates its noisy share anew."""
        self.recent.append(losses)
        self.share = noisy_share(np.concatenate(self.recent), self.options.separation)

    def on(self, pool_size: int, batch_size: int) -> bool:
        """Whether selection pays by the current estimate (True before any pool's measured)."""
        return self.share is None or self.share > self.threshold(pool_size, batch_size)

    def candidates(
        self, tasks: TaskSource, size: int, batch_size: int, rng: np.random.Generator
    ) -> list[Episode]:
        check = self.since_measured + 1 >= self.options.check_every
        measure = self.on(size, batch_size) or check
        self.measures = Measure.LOSSES if measure else Measure.NONE
        return [tasks.sample(rng) for _ in range(size if measure else batch_size)]

    def choose(
        self, pool: Candidates, batch_size: int, rng: np.random.Generator, services: Services
    ) -> Selection:
        if pool.stats is None:  # off: the pool is the B uniform draws
            self.since_measured += 1
            return Selection(np.arange(batch_size), diagnostics={"measured": 0})
        losses = pool.stats.query_loss
        self._remember(losses.double().numpy().copy())
        self.since_measured = 0
        return Selection(
            top_k(-losses, batch_size), diagnostics={"measured": 1, "noisy_share": self.share}
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "recent": [torch.from_numpy(losses) for losses in self.recent],
            "since_measured": self.since_measured,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.recent = deque(maxlen=self.options.window)
        self.share = None
        for losses in state["recent"]:
            self._remember(losses.double().numpy().copy())
        self.since_measured = int(state["since_measured"])
