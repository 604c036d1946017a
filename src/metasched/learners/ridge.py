"""ANIL with a closed-form ridge head (after R2-D2, Bertinetto et al., ICLR 2019)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from metasched.errors import MetaschedError
from metasched.learners.anil import ANIL
from metasched.learners.functional import Adaptation, Params
from metasched.learners.objectives import Objective, Regression


class RidgeANIL(ANIL):
    """ANIL whose inner loop solves the head exactly instead of taking SGD steps.

    The adapted head is the ridge regression of the support residuals on the backbone
    features, centred on the meta-learned head: it minimises ‖y - f(x)‖² + λ‖Δ‖², where
    Δ is the change of the head's weights and bias. This is the posterior mean of Bayesian
    linear regression with a Gaussian prior around the meta-learned head, so the backbone is
    meta-trained for exactly what it is used for at test time. The solve runs in the N x N
    space of the support (Woodbury), cheap for the support sizes of few-shot regression, and
    it is differentiable, so the meta-gradient reaches the backbone through it.

    Regression only (one output per example). The inner learning rate and step count are
    unused; ``penalty`` is λ (the backbone learns the feature scale it works with).
    """

    settings: ClassVar[dict[str, str]] = {"penalty": "ridge_penalty"}

    def __init__(
        self,
        model: nn.Module,
        objective: Objective,
        train: Adaptation,
        eval: Adaptation,
        first_order: bool = False,
        scored: str = "all",
        batching: str = "loop",
        penalty: float = 1.0,
    ) -> None:
        super().__init__(model, objective, train, eval, first_order, scored, batching)
        if not penalty > 0:
            raise MetaschedError(f"ridge penalty must be positive, got {penalty}; try 1.0")
        self.penalty = penalty

    @classmethod
    def misfit(cls, objective: Objective) -> str:
        if isinstance(objective, Regression):
            return ""
        return "fits regression heads only; use anil or maml for classification"

    def instability_advice(self) -> str:
        setting = f"learner.ridge_penalty={self.penalty * 10:g}"
        return f"the closed-form head is ill-conditioned at this θ0: raise {setting}"

    def adapt_head(
        self,
        head: Params,
        features: torch.Tensor,
        targets: torch.Tensor,
        adaptation: Adaptation,
        create_graph: bool,
    ) -> Params:
        weight, bias = head["weight"], head["bias"]
        tasks, shots, _ = features.shape
        if weight.shape[-2] != 1:
            raise MetaschedError("learner.algorithm=ridge fits one output (regression) only")
        prior = torch.baddbmm(bias.unsqueeze(1), features, weight.transpose(1, 2))
        residual = targets.to(features.dtype).unsqueeze(-1) - prior  # (T, N, 1)
        design = torch.cat([features, features.new_ones(tasks, shots, 1)], dim=-1)
        gram = design @ design.transpose(1, 2)
        eye = torch.eye(shots, dtype=features.dtype, device=features.device)
        coefficients = torch.linalg.solve(gram + self.penalty * eye, residual)
        delta = (design.transpose(1, 2) @ coefficients).transpose(1, 2)  # (T, 1, D + 1)
        return {"weight": weight + delta[..., :-1], "bias": bias + delta[..., -1]}
