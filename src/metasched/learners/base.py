"""Gradient-based meta-learners, written functionally on parameter dictionaries."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol, TypeVar, cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from metasched.errors import MetaschedError
from metasched.learners.objectives import Objective
from metasched.models.layout import keep_nchw
from metasched.models.norm import TaskBatchNorm, cancelled_parameters
from metasched.stats import PoolStats
from metasched.tasks.episode import Episode, EpisodeBatch

Params = dict[str, torch.Tensor]
Measured = TypeVar("Measured")
Predictor = Callable[[torch.Tensor], torch.Tensor]
BATCHING = ("loop", "grouped")


class GroupedBackbone(Protocol):
    """A backbone that evaluates T tasks at once with per-task parameters."""

    def grouped(self, params: Params, x: torch.Tensor) -> torch.Tensor: ...


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
class PoolMeasurements:
    """Scheduler inputs for a pool of candidates, and (optionally) their training losses.

    ``losses[i]`` is candidate i's query loss after adaptation, still differentiable w.r.t.
    θ0, so a look-ahead step or the meta-update on chosen candidates can reuse the pool's
    forward passes instead of recomputing them. ``scores`` are the candidates' adapted query
    scores (the objective's score: accuracy, or squared Pearson correlation).
    """

    stats: PoolStats
    losses: list[torch.Tensor] | None
    scores: torch.Tensor


@dataclass(frozen=True)
class TaskMeasurement:
    """One candidate's row of :class:`PoolStats`, its adapted query loss and score."""

    query_loss: torch.Tensor
    query_score: torch.Tensor
    support_norm: torch.Tensor
    query_norm: torch.Tensor
    dot: torch.Tensor


@dataclass(frozen=True)
class TaskOutcome:
    """A task's query loss after adaptation, its score (the objective's: accuracy, or squared
    Pearson correlation) and, from :meth:`MetaLearner.evaluate`, the objective's metrics."""

    loss: torch.Tensor
    score: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)


class MetaLearner(ABC):
    """Adapts a model to each task's support set and scores it on the query set.

    The model must have a ``backbone`` and a linear ``head`` (see :mod:`metasched.models`).
    Meta-parameters live in the model; every method takes them as a dictionary so that the
    same code serves the meta-model, a look-ahead copy, or a detached evaluation copy.

    Args:
        model: the network whose parameters are meta-learned.
        objective: the loss, score and metrics (:mod:`metasched.learners.objectives`).
        train: inner-loop settings during meta-training.
        eval: inner-loop settings at validation and test time.
        first_order: drop second-order terms from the meta-gradient.
        scored: which layers the pool statistics compare: ``"all"`` (every weight and bias
            but batch norm's, as the reference) or ``"last"`` (the last backbone layer and
            the head: a cheaper backward pass for the pool).
        batching: ``"loop"`` runs tasks one after another; ``"grouped"`` runs same-shaped
            tasks in one pass with per-task weights (tasks as convolution groups), so one
            backward gives every task's own gradients (the faster choice on GPUs).
    """

    def __init__(
        self,
        model: nn.Module,
        objective: Objective,
        train: Adaptation,
        eval: Adaptation,
        first_order: bool = False,
        scored: str = "all",
        batching: str = "loop",
    ) -> None:
        if scored not in ("all", "last"):
            raise MetaschedError(f"scored layers must be all or last, got {scored!r}")
        if batching not in BATCHING:
            raise MetaschedError(f"task batching must be loop or grouped, got {batching!r}")
        self.model = model
        self.scored = scored
        self.batching = batching
        self.objective = objective
        self.loss_fn = objective.loss
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
        layers = [name for name in self.parameters() if name not in norm]
        if self.scored == "last":
            head = [name for name in layers if name.startswith("head.")]
            backbone = [name for name in layers if not name.startswith("head.")]
            layers = backbone[-2:] + head
        return layers

    def measure_pool(
        self,
        params: Params,
        episodes: list[Episode],
        keep_graph: bool,
        gradients: bool = True,
        graph_budget: int | None = None,
    ) -> PoolMeasurements:
        """Pool statistics at ``params`` for every candidate, computed once.

        Args:
            params: the meta-parameters θ0.
            episodes: the candidates.
            keep_graph: also return each candidate's adapted query loss with its graph, for
                reuse by a look-ahead step and the meta-update (costs memory for P graphs).
            gradients: also measure the per-layer support/query gradient statistics; without
                them only the adapted query losses are computed.
            graph_budget: bytes the kept graphs may take (``None``: no limit); see
                :meth:`_measure_each`.
        """
        if not gradients:
            return self._measure_losses(params, episodes, keep_graph, graph_budget)
        if not keep_graph and self._grouped(episodes):
            measured = self.measure_pool_grouped(params, EpisodeBatch.stack(episodes))
        else:
            rows, keep_graph = _measure_each(
                episodes,
                keep_graph,
                graph_budget,
                lambda episode, keep: self.measure_task(params, episode, keep),
                lambda row: replace(row, query_loss=row.query_loss.detach()),
                lambda row: row.query_loss,
            )
            measured = PoolMeasurements(
                PoolStats(
                    torch.stack([r.query_loss.detach() for r in rows]),
                    torch.stack([r.support_norm for r in rows]),
                    torch.stack([r.query_norm for r in rows]),
                    torch.stack([r.dot for r in rows]),
                ),
                [r.query_loss for r in rows] if keep_graph else None,
                torch.stack([r.query_score for r in rows]),
            )
        return self._without_cancelled_layers(measured)

    def _measure_losses(
        self, params: Params, episodes: list[Episode], keep_graph: bool, graph_budget: int | None
    ) -> PoolMeasurements:
        """Adapted query losses (and scores) only."""
        outcomes, keep_graph = _measure_each(
            episodes,
            keep_graph,
            graph_budget,
            lambda episode, keep: (
                self.query_outcome(params, episode)
                if keep
                else self.evaluate(params, episode, self.train_adaptation)
            ),
            lambda outcome: replace(outcome, loss=outcome.loss.detach()),
            lambda outcome: outcome.loss,
        )
        losses = torch.stack([o.loss.detach() for o in outcomes])
        return PoolMeasurements(
            PoolStats(losses),
            [o.loss for o in outcomes] if keep_graph else None,
            torch.stack([torch.as_tensor(o.score) for o in outcomes]),
        )

    def _without_cancelled_layers(self, measured: PoolMeasurements) -> PoolMeasurements:
        """Zeroes the statistics of layers whose gradient is zero by structure (a bias before
        batch norm), which float round-off would otherwise fill with noise of 1e-5..1e-8."""
        cancelled = cancelled_parameters(self.model)
        live = torch.tensor([name not in cancelled for name in self.scored_layers()])
        stats = measured.stats
        if live.all() or stats.support_norm is None:
            return measured
        mask = live.to(stats.query_loss.device, stats.support_norm.dtype)
        assert stats.query_norm is not None and stats.dot is not None
        zeroed = PoolStats(
            stats.query_loss, stats.support_norm * mask, stats.query_norm * mask, stats.dot * mask
        )
        return PoolMeasurements(zeroed, measured.losses, measured.scores)

    @abstractmethod
    def measure_task(self, params: Params, episode: Episode, keep_graph: bool) -> TaskMeasurement:
        """One candidate's statistics; its query loss keeps its graph if ``keep_graph``."""

    def outcomes(self, params: Params, episodes: list[Episode]) -> list[TaskOutcome]:
        """Training outcomes of several tasks (:meth:`query_outcome` each), grouped if set."""
        if not self._grouped(episodes):
            return [self.query_outcome(params, episode) for episode in episodes]
        batch = EpisodeBatch.stack(episodes)
        shared = {n: p.expand(len(episodes), *p.shape) for n, p in params.items()}
        predict = self.grouped_adapt(
            shared, batch.support_x, batch.support_y, self.train_adaptation, not self.first_order
        )
        predictions = predict(batch.query_x)
        losses = self.objective.losses(predictions, batch.query_y)
        scores = self.objective.scores(predictions.detach(), batch.query_y)
        return [TaskOutcome(loss, score) for loss, score in zip(losses, scores)]

    def measure_pool_grouped(self, params: Params, batch: EpisodeBatch) -> PoolMeasurements:
        """:meth:`measure_pool` for T same-shaped tasks in grouped passes: each task gets its
        own copy of θ0 for its support and for its query set, so one backward pass yields
        every task's support and query gradients."""
        tasks = batch.support_x.shape[0]
        layers = self.scored_layers()
        copies = [
            {
                n: p.detach().expand(tasks, *p.shape).clone().requires_grad_()
                for n, p in params.items()
            }
            for _ in range(2)
        ]
        support_loss = self.objective.losses(
            self.grouped_forward(copies[0], batch.support_x), batch.support_y
        )
        query_loss = self.objective.losses(
            self.grouped_forward(copies[1], batch.query_x), batch.query_y
        )
        grads = torch.autograd.grad(
            (support_loss + query_loss).sum(),
            [c[n] for c in copies for n in layers],
            allow_unused=True,
        )
        support = [_flat(g, copies[0][n]) for g, n in zip(grads, layers)]
        query = [_flat(g, copies[1][n]) for g, n in zip(grads[len(layers) :], layers)]
        detached = {n: p.detach().expand(tasks, *p.shape) for n, p in params.items()}
        predict = self.grouped_adapt(
            detached, batch.support_x, batch.support_y, self.train_adaptation, False
        )
        with torch.no_grad():
            predictions = predict(batch.query_x)
        stats = PoolStats(
            self.objective.losses(predictions, batch.query_y),
            torch.stack([g.norm(dim=1) for g in support], dim=1),
            torch.stack([g.norm(dim=1) for g in query], dim=1),
            torch.stack([(a * b).sum(dim=1) for a, b in zip(support, query)], dim=1),
        )
        return PoolMeasurements(stats, None, self.objective.scores(predictions, batch.query_y))

    def grouped_forward(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """The model on T tasks at once with per-task parameters (leading dimension T)."""
        features = self.grouped_features(params, x)
        return torch.baddbmm(
            params["head.bias"].unsqueeze(1), features, params["head.weight"].transpose(1, 2)
        )

    def grouped_features(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """Backbone features of T tasks at once with per-task parameters."""
        backbone = {
            n.removeprefix("backbone."): p for n, p in params.items() if n.startswith("backbone.")
        }
        module = cast(GroupedBackbone, self.model.get_submodule("backbone"))
        return module.grouped(backbone, x)

    @abstractmethod
    def grouped_adapt(
        self,
        params: Params,
        support_x: torch.Tensor,
        support_y: torch.Tensor,
        adaptation: Adaptation,
        create_graph: bool,
    ) -> Predictor:
        """:meth:`adapt` for T tasks at once; ``params`` carry a leading task dimension."""

    def _grouped(self, episodes: list[Episode]) -> bool:
        return (
            self.batching == "grouped"
            and len(episodes) > 1
            and hasattr(self.model.get_submodule("backbone"), "grouped")
            and EpisodeBatch.stackable(episodes)
        )

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

    def features(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """Backbone features of ``x`` under ``params``."""
        backbone = {
            n.removeprefix("backbone."): p for n, p in params.items() if n.startswith("backbone.")
        }
        return functional_call(self.model.get_submodule("backbone"), backbone, (x,))

    def embed(self, params: Params, episodes: list[Episode]) -> torch.Tensor:
        """(P, D) task embeddings: the mean backbone features of each task's support and query
        inputs at ``params``, L2-normalised. They describe which inputs a task covers, not its
        labels."""
        with torch.no_grad():
            rows = [
                F.normalize(
                    self.features(params, torch.cat([e.support_x, e.query_x])).mean(0), dim=0
                )
                for e in episodes
            ]
        return torch.stack(rows)

    def full_forward(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """The whole model under ``params``."""
        return functional_call(self.model, params, (x,))

    def two_step_parameters(self, params: Params, episode: Episode) -> torch.Tensor:
        """(2, D): the flat parameters after one SGD step of the whole network on the support,
        θs = θ0 - α ∇L(support; θ0), and after one more on the query, θsq = θs - α ∇L(query;
        θs), with α the inner learning rate (the contexts of BASS)."""
        lr = self.train_adaptation.lr
        weights = {n: p.detach().requires_grad_() for n, p in params.items()}
        flats = []
        for x, y in ((episode.support_x, episode.support_y), (episode.query_x, episode.query_y)):
            loss = self.loss_fn(self.full_forward(weights, x), y)
            grads = torch.autograd.grad(loss, list(weights.values()), allow_unused=True)
            weights = {
                n: (p if g is None else p - lr * g).detach().requires_grad_()
                for (n, p), g in zip(weights.items(), grads)
            }
            flats.append(torch.cat([p.detach().flatten() for p in weights.values()]))
        return torch.stack(flats)

    def unflatten(self, flat: torch.Tensor) -> Params:
        """Parameters by name from a flat vector laid out as :meth:`two_step_parameters`."""
        params, start = {}, 0
        for name, p in self.parameters().items():
            params[name] = flat[start : start + p.numel()].view_as(p)
            start += p.numel()
        return params

    def one_step_query_loss(self, params: Params, episode: Episode) -> float:
        """The query loss after one plain SGD step of the whole network on the support (the
        inner learning rate), without a meta-graph."""
        detached = {n: p.detach() for n, p in params.items()}

        def support_loss(weights: Params) -> torch.Tensor:
            return self.loss_fn(self.full_forward(weights, episode.support_x), episode.support_y)

        with torch.enable_grad():
            fast = sgd_steps(support_loss, detached, Adaptation(self.train_adaptation.lr, 1), False)
        with torch.no_grad():
            return float(self.loss_fn(self.full_forward(fast, episode.query_x), episode.query_y))

    def query_confusion(self, params: Params, episode: Episode) -> torch.Tensor:
        """(N, N): row c is the mean predicted class distribution of the query examples of true
        class c, after adaptation (training settings) at ``params``; classification only."""
        detached = {n: p.detach() for n, p in params.items()}
        with torch.enable_grad():
            predict = self.adapt(
                detached, episode.support_x, episode.support_y, self.train_adaptation, False
            )
        with torch.no_grad():
            probabilities = F.softmax(predict(episode.query_x), dim=-1)
            classes = probabilities.shape[-1]
            one_hot = F.one_hot(episode.query_y.long(), classes).to(probabilities.dtype)
            counts = one_hot.sum(0).clamp_min(1).unsqueeze(1)
            return one_hot.T @ probabilities / counts

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
        return TaskOutcome(loss, self.objective.score(predictions.detach(), episode.query_y))

    def predict(
        self, params: Params, episode: Episode, adaptation: Adaptation | None = None
    ) -> torch.Tensor:
        """The query predictions after adapting to the support (the eval settings unless
        given), without a meta-graph: what a user's new task gets, and what evaluation scores."""
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
            return predict(episode.query_x)

    def evaluate(
        self, params: Params, episode: Episode, adaptation: Adaptation | None = None
    ) -> TaskOutcome:
        """Evaluation: the loss, score and metrics of :meth:`predict`'s query predictions."""
        predictions = self.predict(params, episode, adaptation)
        return TaskOutcome(
            self.loss_fn(predictions, episode.query_y),
            self.objective.score(predictions, episode.query_y),
            self.objective.metrics(predictions, episode),
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
        with keep_nchw(create_graph):  # differentiated twice: see keep_nchw
            loss = loss_of(fast)
        grads = torch.autograd.grad(loss, list(fast.values()), create_graph=create_graph)
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


def _flat(gradient: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """A per-task gradient (T, ...) as (T, n); zeros where the loss does not reach."""
    return (gradient if gradient is not None else torch.zeros_like(like)).flatten(1)


def _leaves(params: Params) -> Params:
    return {n: p.detach().requires_grad_() for n, p in params.items()}


def graph_bytes(output: torch.Tensor) -> int:
    """The memory of the tensors autograd saved for ``output``'s backward (each storage once;
    leaves such as parameters and input images, which exist anyway, excluded).

    Walks the graph and reads each node's saved tensors: saved-tensor hooks would do it during
    the forward pass, but a hook that returns the tensor itself ties a saved output to its own
    node in a reference cycle, and the graph is never freed (260 MB an iteration at 84x84).
    """
    seen_nodes: set[int] = set()
    seen_storages: set[int] = set()
    total = 0
    stack = [output.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        stack.extend(next_node for next_node, _ in node.next_functions)
        for name in dir(node):
            if not name.startswith("_saved_"):
                continue
            try:
                value = getattr(node, name)
            except RuntimeError:  # freed, or not a readable saved value
                continue
            for tensor in value if isinstance(value, tuple | list) else (value,):
                if isinstance(tensor, torch.Tensor) and tensor.grad_fn is not None:
                    storage = tensor.untyped_storage()
                    if storage.data_ptr() not in seen_storages:
                        seen_storages.add(storage.data_ptr())
                        total += storage.nbytes()
    return total


def _measure_each(
    episodes: list[Episode],
    keep_graph: bool,
    graph_budget: int | None,
    measure: Callable[[Episode, bool], Measured],
    drop_graph: Callable[[Measured], Measured],
    loss_of: Callable[[Measured], torch.Tensor],
) -> tuple[list[Measured], bool]:
    """``measure(episode, keep)`` for each candidate, and whether their graphs were kept.

    Kept graphs save recomputing the chosen candidates, at the memory of P graphs: 2 GiB for
    a pool of 10 at 84x84 (docs/benchmarks.md). The first candidate's graph decides: if P
    graphs its size would exceed ``graph_budget`` bytes, it is dropped and none is kept. The
    chosen tasks are then recomputed: the same results up to float round-off.
    """
    results: list[Measured] = []
    keep = keep_graph
    for index, episode in enumerate(episodes):
        if keep and index == 0 and graph_budget is not None:
            result = measure(episode, True)
            if graph_bytes(loss_of(result)) * len(episodes) > graph_budget:
                keep, result = False, drop_graph(result)
        else:
            result = measure(episode, keep)
        results.append(result)
    return results, keep
