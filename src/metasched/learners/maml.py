"""MAML (Finn et al., 2017): every parameter adapts in the inner loop."""

from __future__ import annotations

import torch
from torch.func import functional_call

from metasched.learners.base import (
    Adaptation,
    MetaLearner,
    Params,
    Predictor,
    TaskMeasurement,
    layer_agreement,
    sgd_steps,
)
from metasched.models.layout import keep_nchw
from metasched.tasks.episode import Episode


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
            return self.loss_fn(functional_call(self.model, fast, (support_x,)), support_y)

        fast = sgd_steps(support_loss, params, adaptation, create_graph)
        return lambda x: functional_call(self.model, fast, (x,))

    def measure_task(self, params: Params, episode: Episode, keep_graph: bool) -> TaskMeasurement:
        """The inner loop's first gradient doubles as the support gradient at θ0."""
        second_order = keep_graph and not self.first_order
        with keep_nchw(second_order):
            support_loss = self.loss_fn(
                functional_call(self.model, params, (episode.support_x,)), episode.support_y
            )
        names = list(params)
        support_grads = torch.autograd.grad(
            support_loss, list(params.values()), create_graph=second_order
        )
        initial_predictions = functional_call(self.model, params, (episode.query_x,))
        query_loss = self.loss_fn(initial_predictions, episode.query_y)
        layers = self.scored_layers()
        lr, steps = self.train_adaptation.lr, self.train_adaptation.steps
        query_grads = torch.autograd.grad(
            query_loss, [params[n] for n in layers], retain_graph=keep_graph and steps == 0
        )
        by_name = dict(zip(names, support_grads))
        norms = layer_agreement(
            tuple(by_name[n] for n in layers), query_grads, [params[n] for n in layers]
        )
        if steps == 0:
            score = self.objective.score(initial_predictions.detach(), episode.query_y)
            return TaskMeasurement(query_loss if keep_graph else query_loss.detach(), score, *norms)
        base = params if keep_graph else {n: p.detach() for n, p in params.items()}
        grads = support_grads if second_order else [g.detach() for g in support_grads]
        fast = {n: base[n] - lr * g for n, g in zip(names, grads)}

        def support_loss_of(weights: Params) -> torch.Tensor:
            return self.loss_fn(
                functional_call(self.model, weights, (episode.support_x,)), episode.support_y
            )

        fast = sgd_steps(support_loss_of, fast, Adaptation(lr, steps - 1), second_order)
        with torch.set_grad_enabled(keep_graph):
            predictions = functional_call(self.model, fast, (episode.query_x,))
            loss = self.loss_fn(predictions, episode.query_y)
        return TaskMeasurement(
            loss, self.objective.score(predictions.detach(), episode.query_y), *norms
        )

    def grouped_adapt(
        self,
        params: Params,
        support_x: torch.Tensor,
        support_y: torch.Tensor,
        adaptation: Adaptation,
        create_graph: bool,
    ) -> Predictor:
        def support_loss(fast: Params) -> torch.Tensor:
            return self.objective.losses(self.grouped_forward(fast, support_x), support_y).sum()

        fast = sgd_steps(support_loss, params, adaptation, create_graph)
        return lambda x: self.grouped_forward(fast, x)
