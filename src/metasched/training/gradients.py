"""Meta-gradients of an iteration's chosen candidates, each computed at most once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from metasched.learners.base import MetaLearner, Params, TaskResults
from metasched.tasks.episode import Episode

Gradient = list[torch.Tensor | None]


def clipped(gradient: Gradient, max_norm: float | None) -> Gradient:
    """``gradient`` rescaled to a global 2-norm of at most ``max_norm`` (``train.clip_grad_norm``;
    ``None``: unchanged), as ``torch.nn.utils.clip_grad_norm_`` rescales parameters' grads.
    The meta-update and a scheduler's look-ahead step both take it: an unclipped look-ahead
    along a 6e7-norm FS-Mol gradient diverged where the clipped update did not."""
    present = [g for g in gradient if g is not None]
    if max_norm is None or not present:
        return gradient
    norm = torch.nn.utils.get_total_norm(present)
    scale = torch.clamp(max_norm / (norm + 1e-6), max=1.0)
    return [None if g is None else g * scale for g in gradient]


@dataclass(frozen=True)
class ChosenOutcome:
    """The weighted meta-gradient of some chosen candidates (one entry per parameter; None
    where no loss reaches it), and their adapted query losses and scores, one per choice."""

    gradient: Gradient
    losses: np.ndarray
    scores: np.ndarray

    @property
    def loss(self) -> float:
        return float(self.losses.mean())

    @property
    def score(self) -> float:
        return float(self.scores.mean())


class CandidateGradients:
    """Meta-gradients of one iteration's candidates at θ0, for look-aheads and the update.

    When the pool kept its graphs, each candidate's gradient is computed the first time it is
    chosen, its graph is freed, and later choices reuse it: the selection for the meta-update
    often repeats candidates of a proposal, the more so as a scheduler grows confident.
    Candidates without a kept graph (an unmeasured pool, grouped or bf16 measurement, tasks
    added after the pool was measured) are recomputed together at each call; a repeated call
    with the same choice and weights returns the same outcome without recomputing.

    Args:
        learner: the meta-learner.
        params: θ0.
        candidates: the pool.
        measured: the pool's measurements, if it was measured (with graphs, if they were kept).
    """

    def __init__(
        self,
        learner: MetaLearner,
        params: Params,
        candidates: list[Episode],
        measured: TaskResults | None,
    ) -> None:
        self.learner = learner
        self.params = params
        self.candidates = list(candidates)
        self.graphs = measured.graphs if measured is not None else None
        self.measured = measured
        self.cache: dict[int, tuple[Gradient, float, float]] = {}
        self.memo: dict[tuple[tuple[int, ...], tuple[float, ...] | None], ChosenOutcome] = {}

    def add(self, episodes: list[Episode]) -> list[int]:
        """Appends tasks that were not in the measured pool; returns their indices."""
        start = len(self.candidates)
        self.candidates.extend(episodes)
        return list(range(start, len(self.candidates)))

    def mean(self, indices: np.ndarray | list[int]) -> ChosenOutcome:
        """The outcome of ``indices`` with equal weights (repeats count again)."""
        return self.combine(indices, None)

    def combine(self, indices: np.ndarray | list[int], weights: np.ndarray | None) -> ChosenOutcome:
        """The meta-gradient of Σ_k w_k L(candidate indices[k]); equal weights when None."""
        chosen = [int(i) for i in indices]
        w = None if weights is None else tuple(float(x) for x in weights)
        key = (tuple(chosen), w)
        if key not in self.memo:
            self.memo[key] = self._combine(chosen, w)
        return self.memo[key]

    def _has_graph(self, index: int) -> bool:
        return self.graphs is not None and index < len(self.graphs)

    def _combine(self, chosen: list[int], w: tuple[float, ...] | None) -> ChosenOutcome:
        weights = np.full(len(chosen), 1.0 / len(chosen)) if w is None else np.array(w)
        kept = [k for k, i in enumerate(chosen) if self._has_graph(i)]
        fresh = [k for k, i in enumerate(chosen) if not self._has_graph(i)]
        losses, scores = np.empty(len(chosen)), np.empty(len(chosen))
        parts: list[tuple[Gradient, float]] = []
        for k in kept:
            gradient, losses[k], scores[k] = self._cached(chosen[k])
            parts.append((gradient, weights[k]))
        if fresh:
            outcomes = self.learner.outcomes(
                self.params, [self.candidates[chosen[k]] for k in fresh]
            )
            assert outcomes.graphs is not None
            stacked = torch.stack(outcomes.graphs)
            if w is None and not kept:  # plain mean, as the meta-loss of uniform sampling
                loss = stacked.mean()
                scale = 1.0
            else:
                share = weights[fresh].sum()
                loss = (
                    stacked * torch.as_tensor(weights[fresh] / share, dtype=stacked.dtype)
                ).sum()
                scale = float(share)
            gradient = list(
                torch.autograd.grad(loss, list(self.params.values()), allow_unused=True)
            )
            parts.append((gradient, scale))
            for k, loss, score in zip(fresh, outcomes.losses, outcomes.scores):
                losses[k], scores[k] = loss.item(), float(score)
        return ChosenOutcome(_weighted(parts, equal=w is None and not fresh), losses, scores)

    def _cached(self, index: int) -> tuple[Gradient, float, float]:
        """Candidate ``index``'s gradient, loss and score; its graph is freed on first use."""
        if index not in self.cache:
            assert self.graphs is not None and self.measured is not None
            loss = self.graphs[index]
            gradient = torch.autograd.grad(loss, list(self.params.values()), allow_unused=True)
            self.cache[index] = (list(gradient), loss.item(), float(self.measured.scores[index]))
        return self.cache[index]


def _weighted(parts: list[tuple[Gradient, float]], equal: bool) -> Gradient:
    """Σ weight · gradient, element-wise (a plain mean when the weights are equal). Which
    parameters a loss reaches depends on the model and the learner, not on the task, so a
    None is None for all."""
    if len(parts) == 1 and (equal or parts[0][1] == 1.0):
        return parts[0][0]
    gradients = [g for g, _ in parts]
    if equal:
        return [
            None if items[0] is None else torch.stack(items).mean(dim=0)
            for items in zip(*gradients)
        ]
    scale = [w for _, w in parts]
    return [
        None
        if items[0] is None
        else sum((w * g for w, g in zip(scale, items)), torch.zeros_like(items[0]))
        for items in zip(*gradients)
    ]
