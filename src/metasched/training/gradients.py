"""Meta-gradients of an iteration's chosen candidates, each computed at most once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from metasched.learners.base import MetaLearner, Params, PoolScores
from metasched.tasks.episode import Episode

Gradient = list[torch.Tensor | None]


@dataclass(frozen=True)
class ChosenOutcome:
    """The mean meta-gradient (one entry per parameter; None where no loss reaches it), the
    mean adapted query loss and the mean score of some chosen candidates."""

    gradient: Gradient
    loss: float
    score: float


class CandidateGradients:
    """Meta-gradients of one iteration's candidates at θ0, for the look-ahead and the update.

    When the pool kept its graphs, each candidate's gradient is computed the first time it is
    chosen, its graph is freed, and later choices reuse it: the selection for the meta-update
    often repeats candidates of the proposal, the more so as the scheduler grows confident.
    Otherwise the chosen candidates are recomputed together at every call.

    Args:
        learner: the meta-learner.
        params: θ0.
        candidates: the pool.
        scores: the pool's statistics, if it was scored (with graphs, if they were kept).
    """

    def __init__(
        self,
        learner: MetaLearner,
        params: Params,
        candidates: list[Episode],
        scores: PoolScores | None,
    ) -> None:
        self.learner = learner
        self.params = params
        self.candidates = candidates
        self.scores = scores
        self.cache: dict[int, tuple[Gradient, float, float]] = {}

    def mean(self, indices: np.ndarray) -> ChosenOutcome:
        """The mean over ``indices`` (repeats count again) of the candidates' outcomes."""
        chosen = [int(i) for i in indices]
        if self.scores is None or self.scores.losses is None:
            return self._recomputed(chosen)
        rows = [self._cached(i, self.scores.losses[i], self.scores.scores[i]) for i in chosen]
        return ChosenOutcome(
            _mean_gradient([gradient for gradient, _, _ in rows]),
            float(np.mean([loss for _, loss, _ in rows])),
            float(np.mean([score for _, _, score in rows])),
        )

    def _cached(
        self, index: int, loss: torch.Tensor, score: torch.Tensor
    ) -> tuple[Gradient, float, float]:
        """Candidate ``index``'s gradient, loss and score; its graph is freed on first use."""
        if index not in self.cache:
            gradient = torch.autograd.grad(loss, list(self.params.values()), allow_unused=True)
            self.cache[index] = (list(gradient), loss.item(), float(score))
        return self.cache[index]

    def _recomputed(self, chosen: list[int]) -> ChosenOutcome:
        outcomes = self.learner.outcomes(self.params, [self.candidates[i] for i in chosen])
        loss = torch.stack([o.loss for o in outcomes]).mean()
        gradient = torch.autograd.grad(loss, list(self.params.values()), allow_unused=True)
        return ChosenOutcome(
            list(gradient), loss.item(), float(np.mean([float(o.score) for o in outcomes]))
        )


def _mean_gradient(gradients: list[Gradient]) -> Gradient:
    """The element-wise mean of several candidates' gradients. Which parameters a loss reaches
    depends on the model and the learner, not on the task, so a None is None for all."""
    return [
        None if parts[0] is None else torch.stack(parts).mean(dim=0) for parts in zip(*gradients)
    ]
