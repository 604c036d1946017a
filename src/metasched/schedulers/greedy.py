"""Greedy low-loss: train on the candidates the meta-model already fits best."""

from __future__ import annotations

import numpy as np

from metasched.schedulers.base import Candidates, Measure, Selection, Services, TaskScheduler, top_k


class GreedyScheduler(TaskScheduler):
    """The B candidates with the smallest adapted query loss.

    Our own control, not from a paper: it needs no network, no reward and no validation data,
    so it shows how much of a learned scheduler's gain a plain loss threshold already gets
    (noisy tasks tend to have high adapted losses). Ties go to the lower pool index.
    """

    name = "greedy"
    measures = Measure.LOSSES

    def choose(
        self, pool: Candidates, batch_size: int, rng: np.random.Generator, services: Services
    ) -> Selection:
        losses = pool.require("stats").query_loss
        return Selection(top_k(-losses, batch_size))
