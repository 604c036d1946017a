"""Episodes (tasks): a support set to adapt on and a query set to be scored on."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
import torch


@dataclass(frozen=True)
class Episode:
    """One few-shot task, for classification (integer labels) or regression (float targets).

    Attributes:
        support_x, support_y: the examples the learner adapts on (labels possibly corrupted).
        query_x, query_y: the examples the adapted learner is scored on (always clean).
        noisy: whether the support labels were corrupted. Training code may log it;
            schedulers other than the oracle must never read it.
        clean_support_y: the true support labels of a noisy episode, for diagnostics.
        source: where the task came from (class indices of the pool, or an assay index).
        source_name: the same for people (an assay id); empty where indices say enough.
        skewed: whether it came from the over-represented part of a skewed task
            distribution (diagnostics only, like ``noisy``).
        target_shift, target_scale: regression targets were standardised as
            (y - shift) / scale; predictions * scale + shift are on the original scale.
    """

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    noisy: bool = False
    clean_support_y: torch.Tensor | None = None
    source: tuple[int, ...] = ()
    skewed: bool = False
    target_shift: float = 0.0
    target_scale: float = 1.0
    source_name: str = ""

    def to(self, device: torch.device | str) -> Episode:
        """The same episode with its tensors on ``device``."""
        move = {
            name: getattr(self, name).to(device, non_blocking=True)
            for name in ("support_x", "support_y", "query_x", "query_y")
        }
        return replace(self, **move)

    @property
    def num_examples(self) -> int:
        return len(self.support_x) + len(self.query_x)


@dataclass(frozen=True)
class EpisodeBatch:
    """T episodes of identical shapes stacked on a leading task dimension."""

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor

    @classmethod
    def stack(cls, episodes: list[Episode]) -> EpisodeBatch:
        if len(episodes) == 1:  # a view, not a copy: the per-task loop stacks every task
            (one,) = episodes
            return cls(
                one.support_x[None], one.support_y[None], one.query_x[None], one.query_y[None]
            )
        return cls(
            *(
                torch.stack([getattr(e, name) for e in episodes])
                for name in ("support_x", "support_y", "query_x", "query_y")
            )
        )

    @staticmethod
    def stackable(episodes: list[Episode]) -> bool:
        """Whether all episodes share their sets' shapes."""
        first = episodes[0]
        return all(
            e.support_x.shape == first.support_x.shape and e.query_x.shape == first.query_x.shape
            for e in episodes
        )


class TaskSource(Protocol):
    """Anything that draws episodes from a random generator."""

    def sample(self, rng: np.random.Generator, index: int | None = None) -> Episode:
        """Draws one episode; ``index`` is the episode's place in an evaluation, which a source
        may use to cover its units evenly (each assay in turn)."""
        ...
