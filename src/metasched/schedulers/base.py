"""Task schedulers: which of the P candidate episodes the meta-model trains on."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class Selection:
    """The chosen candidates and the sampling probabilities they were drawn with."""

    indices: np.ndarray
    probabilities: torch.Tensor


class TaskScheduler(ABC):
    """Chooses ``batch_size`` of ``pool_size`` candidates each iteration.

    A scheduler works on tensors and numbers only, so it can serve any training loop.
    """

    @abstractmethod
    def select(self, pool_size: int, batch_size: int, rng: np.random.Generator) -> Selection:
        """Draws the candidates to train on."""

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must hold to resume this scheduler exactly."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 (stateless default)
        """Restores :meth:`state_dict`."""
