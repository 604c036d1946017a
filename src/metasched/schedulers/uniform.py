"""Baselines without learning: uniform sampling, and the oracle that knows which tasks are noisy."""

from __future__ import annotations

import numpy as np
import torch

from metasched.schedulers.base import Pool, Selection, TaskScheduler


class UniformScheduler(TaskScheduler):
    """Every candidate equally likely; ``batch_size`` drawn without replacement."""

    def select(self, pool: Pool, batch_size: int, rng: np.random.Generator) -> Selection:
        if pool.size == batch_size:
            indices = np.arange(batch_size)
        else:
            indices = rng.choice(pool.size, batch_size, replace=False)
        return Selection(indices, torch.full((pool.size,), 1.0 / pool.size))


class OracleScheduler(TaskScheduler):
    """Reads the ground-truth noise flags and trains on clean candidates only, uniformly.

    An upper reference for what a scheduler could gain on noisy tasks; the trainer draws
    extra candidates until the pool holds ``batch_size`` clean ones.
    """

    reads_noise_flags = True

    def select(self, pool: Pool, batch_size: int, rng: np.random.Generator) -> Selection:
        if pool.noisy is None:
            raise ValueError("the oracle scheduler needs the pool's noise flags")
        clean = np.flatnonzero(~pool.noisy)
        if len(clean) < batch_size:
            raise ValueError(f"the pool holds {len(clean)} clean candidates, need {batch_size}")
        probabilities = torch.zeros(pool.size)
        probabilities[torch.from_numpy(clean)] = 1.0 / len(clean)
        return Selection(rng.choice(clean, batch_size, replace=False), probabilities)
