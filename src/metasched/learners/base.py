"""Gradient-based meta-learners, written functionally on parameter dictionaries."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from metasched.errors import MetaschedError
from metasched.models.norm import TaskBatchNorm
from metasched.stats import PoolStats
from metasched.tasks.episode import Episode

Params = dict[str, torch.Tensor]
Predictor = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Adaptation:
    """Inner-loop settings: plain SGD with learning rate ``lr`` for ``steps`` steps."""

    lr: float
    steps: int

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise MetaschedError(f"inner learning rate must be positive, got {self.lr}")
        if self.steps < 0:
            raise MetaschedError(f"inner steps must be >= 0, got {self.steps}")


@dataclass(frozen=True)
class PoolScores:
    """Scheduler inputs for a pool of candidates, and (optionally) their training losses.

    ``losses[i]`` is candidate i's query loss after adaptation, still differentiable w.r.t.
    θ0, so a look-ahead step or the meta-update on chosen candidates can reuse the pool's
    forward passes instead of recomputing them.
    """

    stats: PoolStats
    losses: list[torch.Tensor] | None
    scores: torch.Tensor


@dataclass(frozen=True)
class TaskScore:
    """One candidate's row of :class:`PoolStats`, its adapted query loss and score."""

    query_loss: torch.Tensor
    query_score: torch.Tensor
    support_norm: torch.Tensor
    query_norm: torch.Tensor
    dot: torch.Tensor


@dataclass(frozen=True)
class TaskOutcome:
    """A task's query loss after adaptation and its score (accuracy, or -MSE for regression)."""

    loss: torch.Tensor
    score: torch.Tensor


def task_loss(kind: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Cross-entropy for classification, mean squared error for regression."""
    if kind == "cross_entropy":
        return F.cross_entropy
    if kind == "mse":
        return lambda predictions, targets: F.mse_loss(predictions.squeeze(-1), targets.float())
    raise MetaschedError(f"unknown loss {kind!r}; use cross_entropy or mse")


class MetaLearner(ABC):
    """Adapts a model to each task's support set and scores it on the query set.

    The model must have a ``backbone`` and a linear ``head`` (see :mod:`metasched.models`).
    Meta-parameters live in the model; every method takes them as a dictionary so that the
    same code serves the meta-model, a look-ahead copy, or a detached evaluation copy.

    Args:
        model: the network whose parameters are meta-learned.
        loss: ``"cross_entropy"`` or ``"mse"``.
        train: inner-loop settings during meta-training.
        eval: inner-loop settings at validation and test time.
        first_order: drop second-order terms from the meta-gradient.
    """

    def __init__(
        self,
        model: nn.Module,
        loss: str,
        train: Adaptation,
        eval: Adaptation,
        first_order: bool = False,
    ) -> None:
        self.model = model
        self.loss_kind = loss
        self.loss_fn = task_loss(loss)
        self.train_adaptation = train
        self.eval_adaptation = eval
        self.first_order = first_order

    def parameters(self) -> Params:
        """The meta-parameters, by name."""
        return dict(self.model.named_parameters())

    def scored_layers(self) -> list[str]:
        """The parameter tensors whose gradients the pool statistics compare, one "layer"
        each: every weight and bias except the batch-norm affine ones (as the reference)."""
        norm = {
            f"{module_name}.{name}"
            for module_name, module in self.model.named_modules()
            if isinstance(module, TaskBatchNorm)
            for name, _ in module.named_parameters()
        }
        return [name for name in self.parameters() if name not in norm]

    def score_pool(self, params: Params, episodes: list[Episode], keep_graph: bool) -> PoolScores:
        """Pool statistics at ``params`` for every candidate, computed once.

        Args:
            params: the meta-parameters θ0.
            episodes: the candidates.
            keep_graph: also return each candidate's adapted query loss with its graph, for
                reuse by a look-ahead step and the meta-update (costs memory for P graphs).
        """
        rows = [self.score_task(params, episode, keep_graph) for episode in episodes]
        stats = PoolStats(
            torch.stack([r.query_loss.detach() for r in rows]),
            torch.stack([r.support_norm for r in rows]),
            torch.stack([r.query_norm for r in rows]),
            torch.stack([r.dot for r in rows]),
        )
        losses = [r.query_loss for r in rows] if keep_graph else None
        return PoolScores(stats, losses, torch.stack([r.query_score for r in rows]))

    @abstractmethod
    def score_task(self, params: Params, episode: Episode, keep_graph: bool) -> TaskScore:
        """One candidate's statistics; its query loss keeps its graph if ``keep_graph``."""

    def gradient_agreement(
        self,
        support_loss: torch.Tensor,
        query_loss: torch.Tensor,
        params: Params,
        retain_graph: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-layer support and query gradient norms and their inner products at θ0."""
        layers = [params[name] for name in self.scored_layers()]
        support = torch.autograd.grad(support_loss, layers, retain_graph=True, allow_unused=True)
        query = torch.autograd.grad(
            query_loss, layers, retain_graph=retain_graph, allow_unused=True
        )
        return layer_agreement(support, query, layers)

    @abstractmethod
    def adapt(
        self,
        params: Params,
        support_x: torch.Tensor,
        support_y: torch.Tensor,
        adaptation: Adaptation,
        create_graph: bool,
    ) -> Predictor:
        """Adapts to a support set and returns the adapted model as a function of inputs."""

    def score(self, predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Accuracy for classification, negative mean squared error for regression."""
        if self.loss_kind == "cross_entropy":
            return (predictions.argmax(-1) == targets).float().mean()
        return -F.mse_loss(predictions.squeeze(-1), targets.float())

    def query_outcome(self, params: Params, episode: Episode) -> TaskOutcome:
        """Training: the query loss after adaptation, differentiable w.r.t. ``params``."""
        predict = self.adapt(
            params,
            episode.support_x,
            episode.support_y,
            self.train_adaptation,
            create_graph=not self.first_order,
        )
        predictions = predict(episode.query_x)
        loss = self.loss_fn(predictions, episode.query_y)
        return TaskOutcome(loss, self.score(predictions.detach(), episode.query_y))

    def evaluate(
        self, params: Params, episode: Episode, adaptation: Adaptation | None = None
    ) -> TaskOutcome:
        """Evaluation: adapts (with the eval settings unless given) without a meta-graph."""
        detached = {name: p.detach() for name, p in params.items()}
        with torch.enable_grad():
            predict = self.adapt(
                detached,
                episode.support_x,
                episode.support_y,
                adaptation or self.eval_adaptation,
                create_graph=False,
            )
        with torch.no_grad():
            predictions = predict(episode.query_x)
            return TaskOutcome(
                self.loss_fn(predictions, episode.query_y), self.score(predictions, episode.query_y)
            )


def sgd_steps(
    loss_of: Callable[[Params], torch.Tensor],
    params: Params,
    adaptation: Adaptation,
    create_graph: bool,
) -> Params:
    """Runs ``adaptation.steps`` plain SGD steps on ``loss_of``, functionally.

    With ``create_graph`` the result stays differentiable through the gradients (second
    order). Without it the gradients are constants, so the result depends on ``params`` only
    through the identity (first order). Parameters that do not require grad (evaluation) are
    adapted as fresh leaves at every step, so no graph accumulates.
    """
    tracked = any(p.requires_grad for p in params.values())
    fast = params if tracked else _leaves(params)
    for _ in range(adaptation.steps):
        grads = torch.autograd.grad(loss_of(fast), list(fast.values()), create_graph=create_graph)
        fast = {n: p - adaptation.lr * g for (n, p), g in zip(fast.items(), grads)}
        if not tracked:
            fast = _leaves(fast)
    return fast


def layer_agreement(
    support: tuple[torch.Tensor | None, ...],
    query: tuple[torch.Tensor | None, ...],
    layers: list[torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(‖g_s‖, ‖g_q‖, ⟨g_s, g_q⟩) per layer; a layer a loss does not reach has zero gradient."""
    flat_s = [
        (g if g is not None else torch.zeros_like(p)).detach().flatten()
        for g, p in zip(support, layers)
    ]
    flat_q = [
        (g if g is not None else torch.zeros_like(p)).detach().flatten()
        for g, p in zip(query, layers)
    ]
    return (
        torch.stack([g.norm() for g in flat_s]),
        torch.stack([g.norm() for g in flat_q]),
        torch.stack([torch.dot(a, b) for a, b in zip(flat_s, flat_q)]),
    )


def _leaves(params: Params) -> Params:
    return {n: p.detach().requires_grad_() for n, p in params.items()}
