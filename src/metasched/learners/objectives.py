"""What a task's predictions are judged by: the training loss, the one higher-is-better score
(checkpoint selection, rewards) and named metrics, for classification and for regression."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F

from metasched.tasks.episode import Episode


class Objective(ABC):
    """A loss, a score and metrics for predictions of one task or of T tasks at once.

    ``score_name`` names the score wherever it is printed; ``percent`` says whether it reads
    as a percentage (accuracy) or as a plain number (R²).
    """

    name: str
    score_name: str
    percent: bool

    @abstractmethod
    def loss(self, predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The mean loss of one task: (N, outputs) predictions, (N,) targets."""

    def losses(self, predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """(T,) mean losses from (T, N, outputs) predictions and (T, N) targets."""
        if len(predictions) == 1:  # the one-task kernel, so a per-task loop rounds as before
            return self.loss(predictions.squeeze(0), targets.squeeze(0)).unsqueeze(0)
        return self.batched_losses(predictions, targets)

    @abstractmethod
    def batched_losses(self, predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """:meth:`losses` for T > 1 tasks, in one batched computation."""

    @abstractmethod
    def scores(self, predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """(T,) scores, higher is better, from (T, N, outputs) and (T, N)."""

    def score(self, predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The score of one task."""
        return self.scores(predictions.unsqueeze(0), targets.unsqueeze(0))[0]

    def metrics(self, predictions: torch.Tensor, episode: Episode) -> dict[str, float]:
        """Named per-task metrics beyond the score, on the data's original scale."""
        return {}


class Classification(Objective):
    """Cross-entropy; the score is accuracy."""

    name, score_name, percent = "classification", "accuracy", True

    def loss(self, predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(predictions, targets)

    def batched_losses(self, predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        losses = F.cross_entropy(predictions.flatten(0, 1), targets.flatten(), reduction="none")
        return losses.view(targets.shape).mean(dim=1)

    def scores(self, predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return (predictions.argmax(-1) == targets).float().mean(dim=1)


class Regression(Objective):
    """Mean squared error on the episode's (possibly standardised) targets; for probabilistic
    predictions, (..., 2) columns of mean and variance (the GP learners), the Gaussian negative
    log-likelihood instead.

    The score is the squared Pearson correlation of the (mean) predictions and the targets
    (the ATS paper's R²; unchanged by the standardisation, and 0 where undefined: constant
    predictions or targets). The metrics, after undoing the standardisation: ``pearson_r2``;
    ``oos_r2``, the out-of-sample R² 1 - SSE / Σ(y - ȳ_support)², which FS-Mol's regression
    work reports and which is negative when the model does worse than predicting the support
    mean; ``rmse``; and for probabilistic predictions ``coverage_68`` and ``coverage_95``, the
    share of query values inside the central 68% and 95% predictive intervals.
    """

    name, score_name, percent = "regression", "pearson_r2", False

    def loss(self, predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if predictions.shape[-1] == 2:
            return gaussian_nll(predictions, targets.float()).mean()
        return F.mse_loss(predictions.squeeze(-1), targets.float())

    def batched_losses(self, predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if predictions.shape[-1] == 2:
            return gaussian_nll(predictions, targets.float()).mean(dim=1)
        return (predictions.squeeze(-1) - targets.float()).pow(2).mean(dim=1)

    def scores(self, predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return pearson_r2(predictions[..., 0], targets.float()).nan_to_num(0.0)

    def metrics(self, predictions: torch.Tensor, episode: Episode) -> dict[str, float]:
        scale, shift = episode.target_scale, episode.target_shift
        predicted = predictions[..., 0].double() * scale + shift
        measured = episode.query_y.double() * scale + shift
        support_mean = episode.support_y.double().mean() * scale + shift
        errors = (predicted - measured).pow(2).sum()
        spread = (measured - support_mean).pow(2).sum()
        named = {
            "pearson_r2": float(pearson_r2(predicted.unsqueeze(0), measured.unsqueeze(0))[0]),
            "oos_r2": float(1.0 - errors / spread) if spread > 0 else float("nan"),
            "rmse": float(errors.div(len(measured)).sqrt()),
        }
        if predictions.shape[-1] == 2:
            sigma = predictions[..., 1].double().clamp_min(0).sqrt() * scale
            distance = (predicted - measured).abs()
            named["coverage_68"] = float((distance <= sigma).double().mean())
            named["coverage_95"] = float((distance <= 1.959964 * sigma).double().mean())
        return named


def gaussian_nll(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-example negative log-likelihood of ``targets`` under N(mean, variance), the last
    dimension of ``predictions`` holding (mean, variance)."""
    mean, variance = predictions[..., 0], predictions[..., 1].clamp_min(1e-9)
    return 0.5 * (torch.log(2 * torch.pi * variance) + (targets - mean).pow(2) / variance)


def pearson_r2(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(T,) squared Pearson correlations of (T, N) predictions and targets; NaN where either
    is constant."""
    p = predictions - predictions.mean(dim=1, keepdim=True)
    t = targets - targets.mean(dim=1, keepdim=True)
    covariance = (p * t).sum(dim=1)
    variances = p.pow(2).sum(dim=1) * t.pow(2).sum(dim=1)
    return torch.where(variances > 0, covariance.pow(2) / variances, torch.nan)


OBJECTIVES: dict[str, Objective] = {o.name: o for o in (Classification(), Regression())}
SCORE_LABELS = {"accuracy": "accuracy", "pearson_r2": "pearson R²"}


def score_label(name: str) -> str:
    """How a score is named in print and tables: ``accuracy``, ``pearson R²``."""
    return SCORE_LABELS.get(name, name)
