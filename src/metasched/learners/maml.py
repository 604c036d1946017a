"""MAML (Finn et al., 2017): every parameter adapts in the inner loop."""

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
from metasched.models.layout import keep_nchw
from metasched.tasks.episode import EpisodeBatch


class MAML(MetaLearner):
    """Model-agnostic meta-learning; ``first_order=True`` gives first-order MAML."""

    def adapt(
        self,
        params: Params,
        support_x: torch.Tensor,
        support_y: torch.Tensor,
        adaptation: Adaptation,
        create_graph: bool,
    ) -> Predictor:
        def support_loss(fast: Params) -> torch.Tensor:
            return self.objective.losses(self.forward(fast, support_x), support_y).sum()

        fast = sgd_steps(support_loss, params, adaptation, create_graph)
        return lambda x: self.forward(fast, x)

    def measure(
        self, support: Params, query: Params, batch: EpisodeBatch, keep_graph: bool
    ) -> tuple[torch.Tensor, GradientRows]:
        """The inner loop's first gradient doubles as the support gradient at θ0."""
        second_order = keep_graph and not self.first_order
        with keep_nchw(second_order):  # differentiated twice: see keep_nchw
            support_loss = self.objective.losses(
                self.forward(support, batch.support_x), batch.support_y
            ).sum()
        names = list(support)
        support_grads = torch.autograd.grad(
            support_loss, list(support.values()), create_graph=second_order
        )
        initial = self.forward(query, batch.query_x)
        query_loss = self.objective.losses(initial, batch.query_y).sum()
        layers = self.scored_layers()
        lr, steps = self.train_adaptation.lr, self.train_adaptation.steps
        query_grads = torch.autograd.grad(
            query_loss, [query[n] for n in layers], retain_graph=keep_graph and steps == 0
        )
        by_name = dict(zip(names, support_grads))
        rows = gradient_rows([by_name[n] for n in layers], query_grads, [query[n] for n in layers])
        if steps == 0:
            return initial, rows
        base = support if keep_graph else {n: p.detach() for n, p in support.items()}
        grads = support_grads if second_order else [g.detach() for g in support_grads]
        fast = {n: base[n] - lr * g for n, g in zip(names, grads)}
        predict = self.adapt(
            fast, batch.support_x, batch.support_y, Adaptation(lr, steps - 1), second_order
        )
        with torch.set_grad_enabled(keep_graph):
            return predict(batch.query_x), rows
