"""Task schedulers: which of the P candidate episodes the meta-model trains on."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from metasched.stats import PoolStats


@dataclass(frozen=True)
class Pool:
    """What a scheduler may know about the current candidates.

    Attributes:
        size: the number of candidates P.
        progress: the fraction of meta-training done, in [0, 1].
        stats: the candidates' statistics (computed only for schedulers that read them).
        noisy: ground-truth noise flags, given only to schedulers that declare
            ``reads_noise_flags`` (the oracle); a real scheduler never sees them.
    """

    size: int
    progress: float = 0.0
    stats: PoolStats | None = None
    noisy: np.ndarray | None = None


@dataclass(frozen=True)
class Selection:
    """The chosen candidates and the distribution they were drawn from.

    ``log_prob`` is the log-probability of the draw, differentiable w.r.t. the scheduler's
    parameters, for schedulers that learn from rewards.
    """

    indices: np.ndarray
    probabilities: torch.Tensor
    log_prob: torch.Tensor | None = None


class TaskScheduler(ABC):
    """Chooses ``batch_size`` of the pool's candidates each iteration.

    A scheduler works on tensors and numbers only, so it can serve any training loop.
    """

    needs_stats: bool = False
    reads_noise_flags: bool = False
    learns: bool = False

    @abstractmethod
    def select(self, pool: Pool, batch_size: int, rng: np.random.Generator) -> Selection:
        """Draws the candidates the meta-model trains on."""

    def propose(self, pool: Pool, batch_size: int, rng: np.random.Generator) -> Selection:
        """Draws the candidates a look-ahead model is built from (learning schedulers)."""
        raise NotImplementedError(f"{type(self).__name__} does not learn from rewards")

    def update(self, proposal: Selection, reward: float) -> dict[str, float]:
        """Learns from the reward of a proposal; returns diagnostics (learning schedulers)."""
        raise NotImplementedError(f"{type(self).__name__} does not learn from rewards")

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must hold to resume this scheduler exactly."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 (stateless default)
        """Restores :meth:`state_dict`."""
