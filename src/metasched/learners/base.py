"""Gradient-based meta-learners, written functionally on parameter dictionaries.

One computation serves every use: parameters carry a leading task dimension T and episodes
are stacked, so a learner adapts, predicts and measures T tasks at once. Running it on tasks
one at a time (``batching: loop``), on all same-shaped tasks together (``grouped``) or on a
rank's share of the tasks are three ways of calling the same code, and the results of any of
them are one :class:`TaskResults`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import ClassVar, cast

import torch
from torch import nn
from torch.func import functional_call

from metasched.errors import MetaschedError
from metasched.learners.objectives import Objective
from metasched.models.grouped import GroupedModule, task_linear
from metasched.models.layout import keep_nchw
from metasched.models.norm import TaskBatchNorm, cancelled_parameters
from metasched.stats import PoolStats
from metasched.tasks.episode import Episode, EpisodeBatch

Params = dict[str, torch.Tensor]
Predictor = Callable[[torch.Tensor], torch.Tensor]
GradientRows = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
BATCHING = ("loop", "grouped")
#: Normalisation layers, whose affine parameters the pool statistics leave out (as the
#: reference does for batch norm).
NORMS = (TaskBatchNorm, nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


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


class MetaLearner(ABC):
    """Adapts a model to each task's support set and scores it on the query set.

    The model must have a ``backbone`` with a ``grouped(params, x)`` computation and a linear
    ``head`` (see :mod:`metasched.models`). Meta-parameters live in the model; every method
    takes them as a dictionary so that the same code serves the meta-model, a look-ahead
    copy, or a detached evaluation copy.

    A learner implements two things, both for T tasks at once: :meth:`adapt` (the inner loop)
    and :meth:`measure` (the inner loop together with the pool statistics, sharing its work).

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

    #: Constructor arguments of a subclass taken from the config's ``learner`` section, by the
    #: key they are read from (e.g. ``{"penalty": "ridge_penalty"}``).
    settings: ClassVar[dict[str, str]] = {}

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
        self.train_adaptation = train
        self.eval_adaptation = eval
        self.first_order = first_order
        self._live_layers: torch.Tensor | None = None

    def parameters(self) -> Params:
        """The meta-parameters, by name."""
        return dict(self.model.named_parameters())

    def scored_layers(self) -> list[str]:
        """The parameter tensors whose gradients the pool statistics compare, one "layer"
        each: every weight and bias of the backbone and the head except the batch-norm affine
        ones (as the reference); a learner's own parameters (a GP's hyperparameters) are not
        layers."""
        norm = {
            f"{module_name}.{name}"
            for module_name, module in self.model.named_modules()
            if isinstance(module, NORMS)
            for name, _ in module.named_parameters()
        }
        layers = [
            name
            for name in self.parameters()
            if name not in norm and name.startswith(("backbone.", "head."))
        ]
        if self.scored == "last":
            head = [name for name in layers if name.startswith("head.")]
            backbone = [name for name in layers if not name.startswith("head.")]
            layers = backbone[-2:] + head
        return layers

    # The one computation, on T tasks: parameters with a leading task dimension.

    def forward(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """The model on T tasks, each with its own parameters: (T, N, ...) to (T, N, out)."""
        return task_linear(self.features(params, x), params["head.weight"], params["head.bias"])

    def features(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """Backbone features of T tasks, each with its own parameters: (T, N, D).

        A backbone with a ``grouped`` computation (Conv4, the fingerprint MLP) runs the T tasks
        in it; any other ``nn.Module`` runs each task through
        :func:`torch.func.functional_call` with that task's parameters (its buffers shared:
        give batch norm ``track_running_stats=False``)."""
        backbone = {
            n.removeprefix("backbone."): p for n, p in params.items() if n.startswith("backbone.")
        }
        module = self.model.get_submodule("backbone")
        if hasattr(module, "grouped"):
            return cast(GroupedModule, module).grouped(backbone, x)
        buffers = dict(module.named_buffers())
        return torch.stack(
            [
                functional_call(module, ({n: p[t] for n, p in backbone.items()}, buffers), (x[t],))
                for t in range(x.shape[0])
            ]
        )

    @abstractmethod
    def adapt(
        self,
        params: Params,
        support_x: torch.Tensor,
        support_y: torch.Tensor,
        adaptation: Adaptation,
        create_graph: bool,
    ) -> Predictor:
        """Adapts T tasks to their support sets ((T, N, ...) inputs, parameters with a leading
        T) and returns the adapted models as one function of (T, M, ...) inputs."""

    @abstractmethod
    def measure(
        self, support: Params, query: Params, batch: EpisodeBatch, keep_graph: bool
    ) -> tuple[torch.Tensor, GradientRows]:
        """The adapted query predictions of T tasks and their pool statistics at θ0.

        ``support`` and ``query`` are two views of θ0 with a leading task dimension: the
        gradients of the support and of the query losses are taken with respect to each, so
        every task's gradients are its own slice. Returns (T, M, out) predictions, which keep
        their graph to θ0 if ``keep_graph``, and the rows of :func:`gradient_rows`.
        """

    def run(
        self,
        params: Params,
        episodes: list[Episode],
        adaptation: Adaptation | None = None,
        keep_graph: bool = False,
        gradients: bool = False,
        metrics: bool = False,
        separate_graphs: bool = False,
        graph_budget: int | None = None,
    ) -> TaskResults:
        """The computation on ``episodes``, one task at a time or grouped (``batching``).

        Args:
            params: the meta-parameters θ0 (no task dimension).
            episodes: the tasks.
            adaptation: the inner loop (the training settings unless given).
            keep_graph: keep the query losses differentiable w.r.t. ``params``.
            gradients: also measure the pool statistics (per-layer gradients at θ0).
            metrics: also compute the objective's named metrics.
            separate_graphs: keep each task's graph on its own (tasks then run one at a time),
                so that backpropagating one of them does not run through the others.
            graph_budget: bytes the kept graphs may take (``None``: no limit). The first
                task's graph decides: if P graphs its size would exceed the budget, it is
                dropped and none is kept (the chosen tasks are then recomputed, the same
                results up to float round-off).
        """
        adaptation = adaptation or self.train_adaptation
        if not episodes:  # a rank's empty share
            return self._no_tasks(keep_graph, gradients, metrics)
        together = self._grouped(episodes) and not (keep_graph and separate_graphs)
        chunks = [episodes] if together else [[e] for e in episodes]
        parts: list[TaskResults] = []
        keep = keep_graph
        for index, chunk in enumerate(chunks):
            part = self._run_chunk(params, chunk, adaptation, keep, gradients, metrics)
            if keep and index == 0 and graph_budget is not None and part.graphs is not None:
                over = graph_bytes(part.graphs[0]) * len(episodes) > graph_budget
                keep, part = not over, part.without_graphs() if over else part
            parts.append(part)
        return TaskResults.cat(parts)

    def _no_tasks(self, keep_graph: bool, gradients: bool, metrics: bool) -> TaskResults:
        none = torch.zeros(0)
        layers = torch.zeros(0, len(self.scored_layers()))
        return TaskResults(
            none,
            none,
            PoolStats(none, layers, layers, layers) if gradients else None,
            () if keep_graph else None,
            {} if metrics else None,
        )

    def _run_chunk(
        self,
        params: Params,
        episodes: list[Episode],
        adaptation: Adaptation,
        keep_graph: bool,
        gradients: bool,
        metrics: bool,
    ) -> TaskResults:
        batch = EpisodeBatch.stack(episodes)
        tasks = len(episodes)
        base = params if keep_graph else {n: p.detach() for n, p in params.items()}
        with torch.enable_grad():  # the inner loop differentiates, at evaluation too
            if gradients:
                if not keep_graph:
                    base = {n: p.requires_grad_() for n, p in base.items()}
                support, query = (task_views(base, tasks) for _ in range(2))
                predictions, rows = self.measure(support, query, batch, keep_graph)
            else:
                create_graph = keep_graph and not self.first_order
                predict = self.adapt(
                    task_views(base, tasks),
                    batch.support_x,
                    batch.support_y,
                    adaptation,
                    create_graph,
                )
                with torch.set_grad_enabled(keep_graph):
                    predictions = predict(batch.query_x)
        results = judged(self.objective, predictions.detach(), batch.query_y, metrics, episodes)
        if gradients:
            results = replace(results, stats=PoolStats(results.losses, *self._live(rows)))
        if keep_graph:
            graphs = self.objective.losses(predictions, batch.query_y)
            results = replace(results, graphs=tuple(graphs.unbind()))
        return results

    def _live(self, rows: GradientRows) -> GradientRows:
        """Zeroes the statistics of layers whose gradient is zero by structure (a bias before
        batch norm), which float round-off would otherwise fill with noise of 1e-5..1e-8."""
        if self._live_layers is None:  # the model's structure does not change
            cancelled = cancelled_parameters(self.model)
            self._live_layers = torch.tensor([n not in cancelled for n in self.scored_layers()])
        live = self._live_layers
        if live.all():
            return rows
        mask = live.to(rows[0].device, rows[0].dtype)
        return rows[0] * mask, rows[1] * mask, rows[2] * mask

    def _grouped(self, episodes: list[Episode]) -> bool:
        return self.batching == "grouped" and len(episodes) > 1 and EpisodeBatch.stackable(episodes)

    @classmethod
    def misfit(cls, objective: Objective) -> str:
        """Why this learner cannot serve ``objective`` (empty: it can)."""
        return ""

    def instability_advice(self) -> str:
        """What to change when the inner loop runs away from a finite θ0 (a non-finite loss)."""
        lr = self.train_adaptation.lr
        return (
            f"the inner loop ran away from a finite θ0 (learner.inner_lr={lr:g}): lower it,"
            f" learner.inner_lr={lr / 10:g}, or clip the meta-update (train.clip_grad_norm=1)"
        )

    # What the training loop, schedulers and evaluation ask for.

    def measure_pool(
        self,
        params: Params,
        episodes: list[Episode],
        keep_graph: bool,
        gradients: bool = True,
        graph_budget: int | None = None,
    ) -> TaskResults:
        """Pool statistics at ``params`` for every candidate, computed once.

        Args:
            params: the meta-parameters θ0.
            episodes: the candidates.
            keep_graph: also keep each candidate's adapted query loss with its graph, for
                reuse by a look-ahead step and the meta-update (costs memory for P graphs;
                each task then runs on its own).
            gradients: also measure the per-layer support/query gradient statistics; without
                them only the adapted query losses are computed (``stats`` then holds losses).
            graph_budget: bytes the kept graphs may take (``None``: no limit); see :meth:`run`.
        """
        results = self.run(
            params,
            episodes,
            keep_graph=keep_graph,
            gradients=gradients,
            separate_graphs=True,
            graph_budget=graph_budget,
        )
        return results if gradients else replace(results, stats=PoolStats(results.losses))

    def outcomes(self, params: Params, episodes: list[Episode]) -> TaskResults:
        """Training: the tasks' query losses after adaptation, differentiable w.r.t. ``params``
        (``graphs``; backpropagate them together)."""
        return self.run(params, episodes, keep_graph=True)

    def evaluate(
        self,
        params: Params,
        episodes: list[Episode],
        adaptation: Adaptation | None = None,
        metrics: bool = True,
    ) -> TaskResults:
        """Evaluation: adapt (the eval settings unless given) without a meta-graph, and the
        loss, score and (if asked) metrics of each task's query predictions."""
        return self.run(params, episodes, adaptation or self.eval_adaptation, metrics=metrics)

    def predict(
        self, params: Params, episode: Episode, adaptation: Adaptation | None = None
    ) -> torch.Tensor:
        """The query predictions after adapting to the support (the eval settings unless
        given), without a meta-graph: what a user's new task gets, and what evaluation scores."""
        detached = task_views({name: p.detach() for name, p in params.items()}, 1)
        with torch.enable_grad():
            predict = self.adapt(
                detached,
                episode.support_x.unsqueeze(0),
                episode.support_y.unsqueeze(0),
                adaptation or self.eval_adaptation,
                create_graph=False,
            )
        with torch.no_grad():
            return predict(episode.query_x.unsqueeze(0))[0]


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


def task_views(params: Params, tasks: int) -> Params:
    """θ0 seen as T tasks' parameters (a leading task dimension, no copy): the gradient of a
    loss with respect to a view is each task's own, and the graph still reaches θ0."""
    if tasks == 1:  # unsqueeze's backward is a view; expand's sums, copying every gradient
        return {n: p.unsqueeze(0) for n, p in params.items()}
    return {n: p.expand(tasks, *p.shape) for n, p in params.items()}


def gradient_rows(
    support: Sequence[torch.Tensor | None],
    query: Sequence[torch.Tensor | None],
    like: Sequence[torch.Tensor],
) -> GradientRows:
    """(‖g_s‖, ‖g_q‖, ⟨g_s, g_q⟩), (T, L) each, from per-task gradients (T, ...) of L layers;
    a layer a loss does not reach has zero gradient."""
    flat_s = [_flat(g, p) for g, p in zip(support, like)]
    flat_q = [_flat(g, p) for g, p in zip(query, like)]
    return (
        torch.stack([g.norm(dim=1) for g in flat_s], dim=1),
        torch.stack([g.norm(dim=1) for g in flat_q], dim=1),
        torch.stack([(a * b).sum(dim=1) for a, b in zip(flat_s, flat_q)], dim=1),
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


def _flat(gradient: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """A per-task gradient (T, ...) as (T, n), detached; zeros where the loss does not reach."""
    return (gradient if gradient is not None else torch.zeros_like(like)).detach().flatten(1)


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
