"""What a learner's computation gives for T tasks (:class:`TaskResults`), and how predictions
are judged by an objective."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from metasched.learners.objectives import Objective
from metasched.stats import PoolStats
from metasched.tasks.episode import Episode


@dataclass(frozen=True)
class TaskResults:
    """What the learner's computation gives for T tasks; row t belongs to task t.

    Attributes:
        losses: (T,) query losses after adaptation, detached.
        scores: (T,) the objective's scores of the adapted query predictions (accuracy, or
            squared Pearson correlation).
        stats: the scheduler's inputs (:class:`PoolStats`), when a pool was measured.
        graphs: the T query losses still differentiable w.r.t. θ0, when kept: for the
            meta-update, or a look-ahead step that reuses the pool's forward passes.
        metrics: the objective's named metrics, (T,) each, on the data's original scale.
    """

    losses: torch.Tensor
    scores: torch.Tensor
    stats: PoolStats | None = None
    graphs: tuple[torch.Tensor, ...] | None = None
    metrics: dict[str, torch.Tensor] | None = None

    def __len__(self) -> int:
        return int(self.losses.shape[0])

    def without_graphs(self) -> TaskResults:
        return replace(self, graphs=None)

    @staticmethod
    def cat(parts: Sequence[TaskResults]) -> TaskResults:
        """The rows of several results in order (chunks of a pool, or ranks' shares)."""
        first = parts[0]
        stats = None
        if first.stats is not None:
            stats = PoolStats.cat([p.stats for p in parts if p.stats is not None])
        graphs = None
        if all(p.graphs is not None for p in parts):
            graphs = tuple(g for p in parts for g in p.graphs or ())
        metrics = None
        if first.metrics is not None:
            metrics = {
                name: torch.cat([(p.metrics or {})[name] for p in parts]) for name in first.metrics
            }
        return TaskResults(
            torch.cat([p.losses for p in parts]),
            torch.cat([p.scores for p in parts]),
            stats,
            graphs,
            metrics,
        )


def judged(
    objective: Objective,
    predictions: torch.Tensor,
    targets: torch.Tensor,
    metrics: bool = False,
    episodes: Sequence[Episode] = (),
) -> TaskResults:
    """The losses, scores and (if asked) metrics of T tasks' (T, M, out) query predictions;
    the metrics read each episode's target scale."""
    named = None
    if metrics:
        rows = [objective.metrics(p, e) for p, e in zip(predictions, episodes)]
        named = {
            name: torch.tensor([row[name] for row in rows], dtype=torch.float64) for name in rows[0]
        }
    return TaskResults(
        objective.losses(predictions, targets),
        objective.scores(predictions, targets),
        metrics=named,
    )
