"""ANIL (Raghu et al., 2020): only the linear head adapts; the backbone is shared."""

from __future__ import annotations

import torch

from metasched.learners.base import MetaLearner
from metasched.learners.functional import (
    Adaptation,
    GradientRows,
    Params,
    Predictor,
    gradient_rows,
    sgd_steps,
)
from metasched.models.grouped import task_linear
from metasched.tasks.episode import EpisodeBatch


def split_params(params: Params, prefix: str) -> tuple[Params, Params]:
    """Splits ``params`` into those under ``prefix.`` (prefix stripped) and the rest."""
    inside = {n[len(prefix) + 1 :]: p for n, p in params.items() if n.startswith(prefix + ".")}
    rest = {n: p for n, p in params.items() if not n.startswith(prefix + ".")}
    return inside, rest


class ANIL(MetaLearner):
    """Almost-no-inner-loop: the head adapts on backbone features computed once per set.

    The backbone does not change in the inner loop, so its features are computed once for the
    support and once for the query (the reference recomputes them at every inner step, with
    the same result).
    """

    def adapt(
        self,
        params: Params,
        support_x: torch.Tensor,
        support_y: torch.Tensor,
        adaptation: Adaptation,
        create_graph: bool,
    ) -> Predictor:
        head, _ = split_params(params, "head")
        features = self.features(params, support_x)
        if not create_graph:  # first order: the support acts only through constant gradients
            features = features.detach()
        head = self.adapt_head(head, features, support_y, adaptation, create_graph)
        return lambda x: task_linear(self.features(params, x), head["weight"], head["bias"])

    def adapt_head(
        self,
        head: Params,
        features: torch.Tensor,
        targets: torch.Tensor,
        adaptation: Adaptation,
        create_graph: bool,
    ) -> Params:
        """SGD on T heads alone, given fixed (T, N, D) features; heads with a leading T."""

        def support_loss(fast: Params) -> torch.Tensor:
            predictions = task_linear(features, fast["weight"], fast["bias"])
            return self.objective.losses(predictions, targets).sum()

        return sgd_steps(support_loss, head, adaptation, create_graph)

    def measure(
        self, support: Params, query: Params, batch: EpisodeBatch, keep_graph: bool
    ) -> tuple[torch.Tensor, GradientRows]:
        """One backbone pass per set serves the gradients at θ0 and the adapted loss."""
        head, _ = split_params(support, "head")
        query_head, _ = split_params(query, "head")
        support_features = self.features(support, batch.support_x)
        query_features = self.features(query, batch.query_x)
        support_loss = self.objective.losses(
            task_linear(support_features, head["weight"], head["bias"]), batch.support_y
        ).sum()
        query_loss = self.objective.losses(
            task_linear(query_features, query_head["weight"], query_head["bias"]), batch.query_y
        ).sum()
        layers = self.scored_layers()
        support_grads = torch.autograd.grad(
            support_loss, [support[n] for n in layers], retain_graph=True, allow_unused=True
        )
        query_grads = torch.autograd.grad(
            query_loss, [query[n] for n in layers], retain_graph=keep_graph, allow_unused=True
        )
        rows = gradient_rows(support_grads, query_grads, [query[n] for n in layers])
        second_order = keep_graph and not self.first_order
        if not keep_graph:
            support_features, query_features = support_features.detach(), query_features.detach()
            head = {n: p.detach() for n, p in head.items()}
        elif not second_order:
            support_features = support_features.detach()
        adapted = self.adapt_head(
            head, support_features, batch.support_y, self.train_adaptation, second_order
        )
        with torch.set_grad_enabled(keep_graph):
            return task_linear(query_features, adapted["weight"], adapted["bias"]), rows
