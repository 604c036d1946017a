"""The oracle: knows which candidates are noisy and trains on clean ones only."""

from __future__ import annotations

import numpy as np
import torch

from metasched.schedulers.base import (
    Feature,
    Pool,
    PoolServices,
    Selection,
    TaskScheduler,
)


class OracleScheduler(TaskScheduler):
    """Reads the ground-truth noise flags and draws B clean candidates uniformly.

    An upper reference for what a scheduler could gain on noisy tasks; the loop draws extra
    candidates until the pool holds B clean ones (``needs_clean_candidates``).
    """

    name = "oracle"
    needs_larger_pool = False
    features = Feature.NOISE_FLAGS
    needs_clean_candidates = True

    def choose(
        self, pool: Pool, batch_size: int, rng: np.random.Generator, services: PoolServices
    ) -> Selection:
        clean = np.flatnonzero(~pool.require("noisy"))
        if len(clean) < batch_size:
            raise ValueError(f"the pool holds {len(clean)} clean candidates, need {batch_size}")
        probabilities = torch.zeros(pool.size)
        probabilities[torch.from_numpy(clean)] = 1.0 / len(clean)
        return Selection(rng.choice(clean, batch_size, replace=False), probabilities)
