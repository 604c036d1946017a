"""The oracle: knows which candidates are noisy and trains on clean ones only."""

from __future__ import annotations

import numpy as np
import torch

from metasched.schedulers.base import Candidates, Selection, Services, TaskScheduler
from metasched.tasks.episode import Episode, TaskSource


class OracleScheduler(TaskScheduler):
    """Reads the ground-truth noise flags and draws B clean candidates uniformly.

    An upper reference for what a scheduler could gain on noisy tasks, not a scheduler: it
    alone reads the episodes' ``noisy`` flags. Its pool is the usual draws, extended until it
    holds B clean candidates.
    """

    name = "oracle"
    needs_larger_pool = False

    def candidates(
        self, tasks: TaskSource, size: int, batch_size: int, rng: np.random.Generator
    ) -> list[Episode]:
        pool = super().candidates(tasks, size, batch_size, rng)
        while sum(not e.noisy for e in pool) < batch_size:
            pool.append(tasks.sample(rng))
        return pool

    def choose(
        self, pool: Candidates, batch_size: int, rng: np.random.Generator, services: Services
    ) -> Selection:
        clean = np.flatnonzero([not e.noisy for e in pool.require("episodes")])
        if len(clean) < batch_size:
            raise ValueError(f"the pool holds {len(clean)} clean candidates, need {batch_size}")
        probabilities = torch.zeros(pool.size)
        probabilities[torch.from_numpy(clean)] = 1.0 / len(clean)
        return Selection(rng.choice(clean, batch_size, replace=False), probabilities)
