"""Gaussian-process learners for few-shot regression: exact GPs conditioned on each task's
support, on meta-learned features (deep kernel transfer, Patacchiola et al., NeurIPS 2020),
optionally with the kernel's hyperparameters fitted per task (in the spirit of ADKF-IFT, Chen
et al., ICLR 2023), and a single-task GP on raw fingerprints (Tanimoto kernel).

All GP algebra runs in float64 on at most a few hundred points per task, with ``torch.linalg``
(a Cholesky factorisation per task, batched over tasks): differentiable, so the meta-gradient
flows through the solve into the feature network. Predictions carry the predictive mean and
variance, (T, M, 2); :class:`metasched.learners.objectives.Regression` scores the mean and
trains on the Gaussian negative log-likelihood.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from metasched.errors import MetaschedError
from metasched.learners.base import MetaLearner
from metasched.learners.functional import (
    Adaptation,
    GradientRows,
    Params,
    Predictor,
    gradient_rows,
    sgd_steps,
)
from metasched.learners.objectives import Objective, Regression
from metasched.learners.results import TaskResults, judged
from metasched.tasks.episode import Episode, EpisodeBatch

#: Kernel parts: on the learned features (``rbf``, ``linear``, ``tanimoto``) or on the raw
#: fingerprints (``fingerprints``: Tanimoto); a kernel is one part or a sum, e.g.
#: ``fingerprints+rbf``, each part with its own output scale.
PARTS = ("rbf", "linear", "tanimoto", "fingerprints")
JITTER = 1e-6
LOG_2PI = math.log(2 * math.pi)


def parse_kernel(kind: str) -> tuple[str, ...]:
    """The parts of a kernel name such as ``fingerprints+rbf``."""
    parts = tuple(kind.split("+"))
    if not parts or any(p not in PARTS for p in parts) or len(set(parts)) != len(parts):
        raise MetaschedError(
            f"learner.kernel={kind!r}; use one of {', '.join(PARTS)} or a sum such as"
            " fingerprints+rbf"
        )
    return parts


def tanimoto(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(T, N, M) Tanimoto similarities ⟨a, b⟩ / (|a|² + |b|² - ⟨a, b⟩) of (T, N, D) and
    (T, M, D) rows (for binary fingerprints: shared bits over bits in either)."""
    dot = a @ b.transpose(-1, -2)
    squares = a.pow(2).sum(-1).unsqueeze(-1) + b.pow(2).sum(-1).unsqueeze(-2)
    return dot / (squares - dot).clamp_min(1e-12)


@dataclass(frozen=True)
class Rows:
    """Compounds as a kernel sees them: raw inputs and learned features, (T, N, ·) each."""

    raw: torch.Tensor
    features: torch.Tensor


def unit_kernel(part: str, a: Rows, b: Rows, log_length: torch.Tensor) -> torch.Tensor:
    """(T, N, M) unit-variance kernel part between rows a and b; ``log_length`` (T,) is the
    RBF's log length scale (relative to sqrt(D), so one default fits any width)."""
    if part == "fingerprints":
        return tanimoto(a.raw, b.raw)
    x, y = a.features, b.features
    if part == "tanimoto":
        return tanimoto(x, y)
    if part == "linear":
        return x @ y.transpose(-1, -2) / x.shape[-1]
    length = log_length.exp().view(-1, 1, 1) * math.sqrt(x.shape[-1])
    x, y = x / length, y / length
    # squared distances by inner products: twice differentiable, unlike torch.cdist
    squared = x.pow(2).sum(-1).unsqueeze(-1) + y.pow(2).sum(-1).unsqueeze(-2)
    return torch.exp(-0.5 * (squared - 2 * x @ y.transpose(-1, -2)).clamp_min(0))


def covariance(parts: tuple[str, ...], hyper: torch.Tensor, a: Rows, b: Rows) -> torch.Tensor:
    """(T, N, M) Σ_parts σ_part² k_part(a, b); ``hyper`` (T, 2 + parts): log σ_n, log ℓ,
    then each part's log σ."""
    total = torch.zeros((), dtype=a.features.dtype, device=a.features.device)
    for i, part in enumerate(parts):
        scale = hyper[:, 2 + i].exp().pow(2).view(-1, 1, 1)
        total = total + scale * unit_kernel(part, a, b, hyper[:, 1])
    return total


def _self_covariance(parts: tuple[str, ...], hyper: torch.Tensor, rows: Rows) -> torch.Tensor:
    """(T, M): k(x, x) of each row."""
    total = torch.zeros(
        rows.features.shape[:2], dtype=rows.features.dtype, device=rows.features.device
    )
    for i, part in enumerate(parts):
        scale = hyper[:, 2 + i].exp().pow(2).view(-1, 1)
        if part == "linear":
            unit = rows.features.pow(2).sum(-1) / rows.features.shape[-1]
        else:
            unit = torch.ones_like(total)
        total = total + scale * unit
    return total


class GPHyperparameters(nn.Module):
    """log σ_n (noise), log ℓ (RBF length scale) and one log σ (output scale) per kernel part,
    meta-learned."""

    def __init__(self, parts: int) -> None:
        super().__init__()
        self.log_noise = nn.Parameter(torch.tensor(-1.0))
        self.log_length = nn.Parameter(torch.zeros(()))
        self.log_scales = nn.Parameter(torch.zeros(parts))


def posterior(
    parts: tuple[str, ...], hyper: torch.Tensor, support: Rows, residual: torch.Tensor, query: Rows
) -> tuple[torch.Tensor, torch.Tensor]:
    """The predictive mean (of the residual) and variance (noise included) at the query rows,
    (T, M) each, given the support rows with (T, N) residual targets."""
    noise = hyper[:, 0].exp().pow(2)
    chol = _cholesky(parts, hyper, support)
    cross = covariance(parts, hyper, support, query)  # (T, N, M)
    alpha = torch.cholesky_solve(residual.unsqueeze(-1), chol)
    mean = (cross.transpose(-1, -2) @ alpha).squeeze(-1)
    v = torch.linalg.solve_triangular(chol, cross, upper=False)
    prior = _self_covariance(parts, hyper, query)
    variance = (prior - v.pow(2).sum(-2)).clamp_min(1e-9) + noise.view(-1, 1)
    return mean, variance


def marginal_nll(
    parts: tuple[str, ...], hyper: torch.Tensor, support: Rows, residual: torch.Tensor
) -> torch.Tensor:
    """(T,) negative log marginal likelihood of the support's residuals, per point."""
    chol = _cholesky(parts, hyper, support)
    alpha = torch.cholesky_solve(residual.unsqueeze(-1), chol).squeeze(-1)
    fit = (residual * alpha).sum(-1)
    log_det = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    n = residual.shape[-1]
    return 0.5 * (fit + log_det + n * LOG_2PI) / n


def _cholesky(parts: tuple[str, ...], hyper: torch.Tensor, rows: Rows) -> torch.Tensor:
    noise = hyper[:, 0].exp().pow(2)
    gram = covariance(parts, hyper, rows, rows)
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    return torch.linalg.cholesky(gram + (noise.view(-1, 1, 1) + JITTER) * eye)


class DeepKernelGP(MetaLearner):
    """An exact GP per task on the backbone's features, its prior mean the support's mean.

    Adapting to a support set is conditioning: the prediction at a query compound is the GP
    posterior mean (the support mean plus the kernel-weighted support residuals) and its
    variance. The meta-parameters are the backbone (the head is unused) and the GP's
    hyperparameters (noise, RBF length scale and an output scale per kernel part; a
    submodule ``gp`` this learner adds to the model). With ``learner.inner_steps=0`` the
    hyperparameters are shared by all tasks (deep kernel transfer); with more, each task fits
    its own by ``inner_steps`` gradient steps of size ``inner_lr`` on its support's negative
    log marginal likelihood, starting from the meta-learned ones, and the meta-gradient flows
    through those steps (unrolled, second order: a documented alternative to the implicit
    function theorem of ADKF-IFT; for a handful of hyperparameters and a few steps it costs
    little). Meta-training minimises the query's Gaussian negative log-likelihood under the
    predictive distribution.

    ``kind`` (``learner.kernel``): ``rbf`` on the features (a meta-learned length scale),
    ``linear`` (Bayesian linear regression on the features: the ridge head with a learned
    noise and scale), ``tanimoto`` on the features, ``fingerprints`` (Tanimoto on the raw
    inputs), or a sum such as ``fingerprints+rbf``. Regression only.
    """

    settings: ClassVar[dict[str, str]] = {"kind": "kernel"}
    # Its hyperparameter fit is a few steps on a handful of numbers, cheap to differentiate;
    # a first-order fit would also stop the starting hyperparameters from being meta-learned.
    has_first_order: ClassVar[bool] = False

    def __init__(
        self,
        model: nn.Module,
        objective: Objective,
        train: Adaptation,
        eval: Adaptation,
        first_order: bool = False,
        scored: str = "all",
        batching: str = "loop",
        kind: str = "rbf",
    ) -> None:
        self.parts = parse_kernel(kind)
        if not hasattr(model, "gp"):  # on the model's device, in its precision
            like = next(model.parameters())
            model.add_module("gp", GPHyperparameters(len(self.parts)).to(like.device, like.dtype))
        super().__init__(model, objective, train, eval, first_order, scored, batching)

    @classmethod
    def misfit(cls, objective: Objective) -> str:
        if isinstance(objective, Regression):
            return ""
        return "fits regression tasks only; use anil or maml for classification"

    def instability_advice(self) -> str:
        return (
            "the GP's support matrix is singular at this θ0: lower learner.inner_lr, or clip"
            " the meta-update (train.clip_grad_norm=1)"
        )

    def _hyper(self, params: Params, tasks: int) -> torch.Tensor:
        """(T, 2 + parts) hyperparameters, one row per task (views of the meta-learned ones):
        log σ_n, log ℓ, then each part's log σ."""
        noise, length, scales = (
            params["gp.log_noise"],
            params["gp.log_length"],
            params["gp.log_scales"],
        )
        if noise.dim() == 0:  # no task dimension: the same for every task
            noise, length, scales = (
                noise.expand(tasks),
                length.expand(tasks),
                scales.expand(tasks, -1),
            )
        return torch.cat([noise.unsqueeze(-1), length.unsqueeze(-1), scales], dim=-1).double()

    def _rows(self, params: Params, x: torch.Tensor) -> Rows:
        """The kernel's view of T tasks' compounds."""
        return Rows(x.double(), self.features(params, x).double())

    def fit_hyperparameters(
        self,
        hyper: torch.Tensor,
        support: Rows,
        residual: torch.Tensor,
        adaptation: Adaptation,
        create_graph: bool,
    ) -> torch.Tensor:
        """``adaptation.steps`` gradient steps on the support's marginal likelihood."""
        if adaptation.steps == 0:
            return hyper

        def loss(fast: Params) -> torch.Tensor:
            return marginal_nll(self.parts, fast["hyper"], support, residual).sum()

        start = hyper if create_graph else hyper.detach()
        return sgd_steps(loss, {"hyper": start}, adaptation, create_graph)["hyper"]

    def adapt(
        self,
        params: Params,
        support_x: torch.Tensor,
        support_y: torch.Tensor,
        adaptation: Adaptation,
        create_graph: bool,
    ) -> Predictor:
        support = self._rows(params, support_x)
        prior = support_y.double().mean(-1, keepdim=True)
        residual = support_y.double() - prior
        hyper = self._hyper(params, support_x.shape[0])
        hyper = self.fit_hyperparameters(hyper, support, residual, adaptation, create_graph)

        def predict(x: torch.Tensor) -> torch.Tensor:
            mean, variance = posterior(self.parts, hyper, support, residual, self._rows(params, x))
            return torch.stack([mean + prior, variance], dim=-1).to(support_x.dtype)

        return predict

    def measure(
        self, support: Params, query: Params, batch: EpisodeBatch, keep_graph: bool
    ) -> tuple[torch.Tensor, GradientRows]:
        """The support's marginal likelihood and the query's likelihood before any
        hyperparameter fitting give the gradients at θ0; then the adapted predictions."""
        layers = self.scored_layers()
        rows = self._rows(support, batch.support_x)
        hyper = self._hyper(support, batch.support_x.shape[0])
        residual = batch.support_y.double()
        residual = residual - residual.mean(-1, keepdim=True)
        support_loss = marginal_nll(self.parts, hyper, rows, residual).sum()
        support_grads = torch.autograd.grad(
            support_loss, [support[n] for n in layers], allow_unused=True
        )
        fixed = Adaptation(self.train_adaptation.lr, 0)
        initial = self.adapt(query, batch.support_x, batch.support_y, fixed, True)
        query_loss = self.objective.losses(initial(batch.query_x), batch.query_y).sum()
        query_grads = torch.autograd.grad(query_loss, [query[n] for n in layers], allow_unused=True)
        grads = gradient_rows(support_grads, query_grads, [query[n] for n in layers])
        base = query if keep_graph else {n: p.detach() for n, p in query.items()}
        adapted = self.adapt(
            base, batch.support_x, batch.support_y, self.train_adaptation, keep_graph
        )
        with torch.set_grad_enabled(keep_graph):
            return adapted(batch.query_x), grads


class TanimotoGP:
    """The single-task baseline: an exact GP on each task's raw fingerprints with a Tanimoto
    kernel, its output scale and noise fitted on the support by maximum marginal likelihood
    (Adam, ``steps`` steps), the prior mean the support mean (targets are standardised).

    Args:
        objective: the regression objective.
        steps: optimisation steps per task.
    """

    description = "GP on fingerprints, Tanimoto kernel, fitted per task"
    parts = ("fingerprints",)

    def __init__(self, objective: Objective, steps: int = 100) -> None:
        self.objective = objective
        self.steps = steps

    def evaluate(self, params: Params, episodes: list[Episode]) -> TaskResults:
        """Fits and predicts each episode on its own."""
        return TaskResults.cat([self._evaluate(e.to("cpu")) for e in episodes])

    def predict(self, episode: Episode) -> torch.Tensor:
        """(M, 2): the query's predictive mean and variance."""
        raw = episode.support_x.double().unsqueeze(0)
        support = Rows(raw, raw)
        targets = episode.support_y.double()
        centre = targets.mean()
        residual = (targets - centre).unsqueeze(0)
        hyper = torch.tensor([[-1.0, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
        optimiser = torch.optim.Adam([hyper], lr=0.05)
        with torch.enable_grad():
            for _ in range(self.steps):
                optimiser.zero_grad()
                marginal_nll(self.parts, hyper, support, residual).sum().backward()
                optimiser.step()
        with torch.no_grad():
            x = episode.query_x.double().unsqueeze(0)
            mean, variance = posterior(self.parts, hyper, support, residual, Rows(x, x))
        return torch.stack([mean[0] + centre, variance[0]], dim=-1).float()

    def _evaluate(self, episode: Episode) -> TaskResults:
        predictions = self.predict(episode).unsqueeze(0)
        return judged(self.objective, predictions, episode.query_y.unsqueeze(0), True, [episode])
