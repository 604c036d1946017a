"""Uniform sampling: every candidate equally likely, the usual meta-learning baseline."""

from __future__ import annotations

import numpy as np
import torch

from metasched.schedulers.base import Selection, TaskScheduler


class UniformScheduler(TaskScheduler):
    """Draws ``batch_size`` candidates uniformly without replacement."""

    def select(self, pool_size: int, batch_size: int, rng: np.random.Generator) -> Selection:
        indices = (
            rng.choice(pool_size, batch_size, replace=False)
            if pool_size > batch_size
            else np.arange(batch_size)
        )
        return Selection(indices, torch.full((pool_size,), 1.0 / pool_size))
