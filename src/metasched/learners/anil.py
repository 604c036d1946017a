"""ANIL (Raghu et al., 2020): only the linear head adapts; the backbone is shared."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from metasched.learners.base import (
    Adaptation,
    MetaLearner,
    Params,
    Predictor,
    TaskMeasurement,
    sgd_steps,
)
from metasched.tasks.episode import Episode


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
        support_features = self.features(params, support_x)
        if not create_graph:  # first order: the support acts only through constant gradients
            support_features = support_features.detach()
        head = self.adapt_head(head, support_features, support_y, adaptation, create_graph)
        return lambda x: F.linear(self.features(params, x), head["weight"], head["bias"])

    def adapt_head(
        self,
        head: Params,
        features: torch.Tensor,
        targets: torch.Tensor,
        adaptation: Adaptation,
        create_graph: bool,
    ) -> Params:
        """SGD on the head alone, given fixed features."""

        def support_loss(fast: Params) -> torch.Tensor:
            return self.loss_fn(F.linear(features, fast["weight"], fast["bias"]), targets)

        return sgd_steps(support_loss, head, adaptation, create_graph)

    def measure_task(self, params: Params, episode: Episode, keep_graph: bool) -> TaskMeasurement:
        """One backbone pass per set serves the gradients at θ0 and the adapted loss."""
        head, _ = split_params(params, "head")
        support_features = self.features(params, episode.support_x)
        query_features = self.features(params, episode.query_x)
        support_loss = self.loss_fn(
            F.linear(support_features, head["weight"], head["bias"]), episode.support_y
        )
        query_loss = self.loss_fn(
            F.linear(query_features, head["weight"], head["bias"]), episode.query_y
        )
        norms = self.gradient_agreement(support_loss, query_loss, params, retain_graph=keep_graph)
        second_order = keep_graph and not self.first_order
        if not keep_graph:
            support_features, query_features = support_features.detach(), query_features.detach()
            head = {n: p.detach() for n, p in head.items()}
        elif not second_order:
            support_features = support_features.detach()
        adapted = self.adapt_head(
            head, support_features, episode.support_y, self.train_adaptation, second_order
        )
        logits = F.linear(query_features, adapted["weight"], adapted["bias"])
        loss = self.loss_fn(logits, episode.query_y)
        score = self.objective.score(logits.detach(), episode.query_y)
        return TaskMeasurement(loss if keep_graph else loss.detach(), score, *norms)

    def grouped_adapt(
        self,
        params: Params,
        support_x: torch.Tensor,
        support_y: torch.Tensor,
        adaptation: Adaptation,
        create_graph: bool,
    ) -> Predictor:
        head, _ = split_params(params, "head")
        features = self.grouped_features(params, support_x)
        if not create_graph:
            features = features.detach()

        head = self.grouped_adapt_head(head, features, support_y, adaptation, create_graph)
        return lambda x: torch.baddbmm(
            head["bias"].unsqueeze(1),
            self.grouped_features(params, x),
            head["weight"].transpose(1, 2),
        )

    def grouped_adapt_head(
        self,
        head: Params,
        features: torch.Tensor,
        targets: torch.Tensor,
        adaptation: Adaptation,
        create_graph: bool,
    ) -> Params:
        """:meth:`adapt_head` for T tasks: (T, N, D) features, heads with a leading T."""

        def support_loss(fast: Params) -> torch.Tensor:
            logits = torch.baddbmm(
                fast["bias"].unsqueeze(1), features, fast["weight"].transpose(1, 2)
            )
            return self.objective.losses(logits, targets).sum()

        return sgd_steps(support_loss, head, adaptation, create_graph)
