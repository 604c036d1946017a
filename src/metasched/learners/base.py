"""Gradient-based meta-learners, written functionally on parameter dictionaries.

One computation serves every use: parameters carry a leading task dimension T and episodes
are stacked, so a learner adapts, predicts and measures T tasks at once. Running it on tasks
one at a time (``batching: loop``), on all same-shaped tasks together (``grouped``) or on a
rank's share of the tasks are three ways of calling the same code, and the results of any of
them are one :class:`TaskResults`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import replace
from typing import ClassVar, cast

import torch
from torch import nn
from torch.func import functional_call

from metasched.errors import MetaschedError
from metasched.learners.functional import (
    Adaptation,
    GradientRows,
    Params,
    Predictor,
    graph_bytes,
    task_views,
)
from metasched.learners.objectives import Objective
from metasched.learners.results import TaskResults, judged
from metasched.models.grouped import GroupedModule, task_linear
from metasched.models.norm import TaskBatchNorm, cancelled_parameters
from metasched.stats import PoolStats
from metasched.tasks.episode import Episode, EpisodeBatch

BATCHING = ("loop", "grouped")
#: Normalisation layers, whose affine parameters the pool statistics leave out (as the
#: reference does for batch norm).
NORMS = (TaskBatchNorm, nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


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
    #: Whether ``first_order=True`` means something for this learner (the config refuses it
    #: where it does not, rather than train something else than it says).
    has_first_order: ClassVar[bool] = True

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
        batching: str | None = None,
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
            batching: ``loop`` or ``grouped`` for this call (the learner's own unless given).
        """
        adaptation = adaptation or self.train_adaptation
        if not episodes:  # a rank's empty share
            return self._no_tasks(keep_graph, gradients, metrics)
        together = self._grouped(episodes, batching) and not (keep_graph and separate_graphs)
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

    def _grouped(self, episodes: list[Episode], batching: str | None = None) -> bool:
        grouped = (batching or self.batching) == "grouped"
        return grouped and len(episodes) > 1 and EpisodeBatch.stackable(episodes)

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
        batching: str | None = None,
    ) -> TaskResults:
        """Evaluation: adapt (the eval settings unless given) without a meta-graph, and the
        loss, score and (if asked) metrics of each task's query predictions (``batching``:
        as :meth:`run`)."""
        adaptation = adaptation or self.eval_adaptation
        return self.run(params, episodes, adaptation, metrics=metrics, batching=batching)

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
