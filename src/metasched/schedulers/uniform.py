"""Uniform sampling: every candidate equally likely."""

from __future__ import annotations

import numpy as np
import torch

from metasched.schedulers.base import (
    Candidates,
    Selection,
    Services,
    TaskScheduler,
    uniform_draw,
)


class UniformScheduler(TaskScheduler):
    """B candidates drawn uniformly without replacement; with the default pool size P = B
    this is the plain uniform task sampling of MAML and ANIL."""

    name = "uniform"
    needs_larger_pool = False

    def choose(
        self, pool: Candidates, batch_size: int, rng: np.random.Generator, services: Services
    ) -> Selection:
        indices = uniform_draw(pool.size, batch_size, rng)
        return Selection(indices, torch.full((pool.size,), 1.0 / pool.size))
