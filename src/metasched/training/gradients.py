"""Meta-gradients of an iteration's chosen candidates, each computed at most once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from metasched.learners.base import MetaLearner
from metasched.learners.functional import Params
from metasched.learners.results import TaskResults
from metasched.tasks.episode import Episode
from metasched.training.ranks import OneProcess, Ranks

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

    With several ranks, a kept candidate's gradient comes from the rank that measured it, the
    recomputed ones are shared out among the ranks, and the weighted gradients, losses and
    scores are summed over ranks, so every rank holds the same outcome.

    Args:
        learner: the meta-learner.
        params: θ0.
        candidates: the pool.
        measured: the pool's per-task rows, if it was measured (every rank's).
        graphs: this rank's kept graphs, by candidate index (default: those ``measured``
            holds, for one process).
        kept: the candidates whose graph some rank kept.
        ranks: the processes the work is shared by.
    """

    def __init__(
        self,
        learner: MetaLearner,
        params: Params,
        candidates: list[Episode],
        measured: TaskResults | None,
        graphs: dict[int, torch.Tensor] | None = None,
        kept: set[int] | None = None,
        ranks: Ranks | None = None,
    ) -> None:
        self.learner = learner
        self.params = params
        self.candidates = list(candidates)
        if graphs is None and measured is not None and measured.graphs is not None:
            graphs = dict(enumerate(measured.graphs))  # one process measured them all
        self.graphs = graphs or {}
        self.kept = set(self.graphs) if kept is None else kept
        self.measured = measured
        self.ranks = ranks or OneProcess()
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

    def _combine(self, chosen: list[int], w: tuple[float, ...] | None) -> ChosenOutcome:
        weights = np.full(len(chosen), 1.0 / len(chosen)) if w is None else np.array(w)
        alone = self.ranks.size == 1
        kept = [k for k, i in enumerate(chosen) if i in self.kept]
        fresh = [k for k, i in enumerate(chosen) if i not in self.kept]
        mine = [k for k in kept if chosen[k] in self.graphs or chosen[k] in self.cache]
        losses, scores = np.zeros(len(chosen)), np.zeros(len(chosen))
        parts: list[tuple[Gradient, float]] = []
        for k in mine:
            gradient, losses[k], scores[k] = self._cached(chosen[k])
            parts.append((gradient, weights[k]))
        my_fresh = self.ranks.mine(fresh)
        if my_fresh:
            outcomes = self.learner.outcomes(
                self.params, [self.candidates[chosen[k]] for k in my_fresh]
            )
            assert outcomes.graphs is not None
            stacked = torch.stack(outcomes.graphs)
            if w is None and not kept:  # plain mean, as the meta-loss of uniform sampling
                loss = stacked.mean() if alone else stacked.sum() / len(fresh)
                scale = 1.0
            else:
                share = weights[my_fresh].sum()
                loss = (
                    stacked * torch.as_tensor(weights[my_fresh] / share, dtype=stacked.dtype)
                ).sum()
                scale = float(share)
            gradient = list(
                torch.autograd.grad(loss, list(self.params.values()), allow_unused=True)
            )
            parts.append((gradient, scale))
            for k, loss_k, score_k in zip(my_fresh, outcomes.losses, outcomes.scores):
                losses[k], scores[k] = loss_k.item(), float(score_k)
        combined: Gradient = [None] * len(self.params)
        if parts:
            combined = _weighted(parts, equal=w is None and not fresh and alone)
        if alone:
            return ChosenOutcome(combined, losses, scores)
        rows = self.ranks.sum(torch.from_numpy(np.stack([losses, scores])))
        summed = self.ranks.sum_gradient(combined)
        return ChosenOutcome(summed, rows[0].numpy(), rows[1].numpy())

    def _cached(self, index: int) -> tuple[Gradient, float, float]:
        """Candidate ``index``'s gradient, loss and score; its graph is freed on first use."""
        if index not in self.cache:
            assert self.measured is not None
            loss = self.graphs.pop(index)
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
