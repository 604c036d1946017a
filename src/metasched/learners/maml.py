"""MAML (Finn et al., 2017): every parameter adapts in the inner loop."""

from __future__ import annotations

import torch
from torch.func import functional_call

from metasched.learners.base import Adaptation, MetaLearner, Params, Predictor, sgd_steps


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
