"""Meta-test evaluation: mean score over many tasks with a 95% confidence interval."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from metasched.learners.base import MetaLearner, Params
from metasched.tasks.episode import TaskSource


@dataclass(frozen=True)
class EvalResult:
    """Per-task scores (accuracy, or -MSE) and query losses after adaptation."""

    scores: np.ndarray
    losses: np.ndarray

    @property
    def mean(self) -> float:
        return float(self.scores.mean())

    @property
    def ci95(self) -> float:
        """Half-width of the normal 95% interval of the mean: 1.96 s / sqrt(n)."""
        if len(self.scores) < 2:
            return float("nan")
        return float(1.96 * self.scores.std(ddof=1) / math.sqrt(len(self.scores)))

    @property
    def loss(self) -> float:
        return float(self.losses.mean())

    def percent(self) -> str:
        """``"95.12 ± 0.41%"``."""
        return f"{100 * self.mean:.2f} ± {100 * self.ci95:.2f}%"


def evaluate(
    learner: MetaLearner,
    params: Params,
    tasks: TaskSource,
    num_tasks: int,
    rng: np.random.Generator,
    device: torch.device,
    description: str | None = None,
) -> EvalResult:
    """Adapts to ``num_tasks`` fresh episodes (eval inner loop) and scores each query set."""
    scores, losses = np.empty(num_tasks), np.empty(num_tasks)
    for i in tqdm(range(num_tasks), desc=description, disable=description is None, leave=False):
        outcome = learner.evaluate(params, tasks.sample(rng).to(device))
        scores[i], losses[i] = outcome.score.item(), outcome.loss.item()
    return EvalResult(scores, losses)
