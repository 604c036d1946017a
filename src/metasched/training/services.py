"""The training loop's toolbox for a scheduler during one iteration (:class:`Services`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
import torch

from metasched.errors import Diverged
from metasched.learners.base import MetaLearner
from metasched.learners.functional import Params
from metasched.learners.results import TaskResults
from metasched.tasks.episode import Episode, TaskSource
from metasched.training.gradients import CandidateGradients, clipped

Item = TypeVar("Item")


class LoopServices:
    """:class:`metasched.schedulers.Services` at one iteration's θ0 and candidates.

    Args:
        learner: the meta-learner.
        params: θ0.
        gradients: the candidates' meta-gradients (shared with the meta-update).
        reward_source: the sampler of clean reward tasks.
        rng: the run's training stream (reward tasks are drawn from it).
        device: where episodes go.
        max_norm: the meta-update's gradient clipping (``train.clip_grad_norm``), which the
            look-ahead step takes too.
    """

    def __init__(
        self,
        learner: MetaLearner,
        params: Params,
        gradients: CandidateGradients,
        reward_source: TaskSource,
        rng: np.random.Generator,
        device: torch.device,
        max_norm: float | None = None,
    ) -> None:
        self.learner = learner
        self.params = params
        self.gradients = gradients
        self.reward_source = reward_source
        self.rng = rng
        self.device = device
        self.max_norm = max_norm
        self.reward_tasks_drawn = 0

    def reward_tasks(self, count: int) -> list[Episode]:
        self.reward_tasks_drawn += count
        return [self.reward_source.sample(self.rng).to(self.device) for _ in range(count)]

    def map_rows(
        self, compute: Callable[[Item], torch.Tensor], items: Sequence[Item]
    ) -> torch.Tensor:
        return self.gradients.ranks.map_rows(compute, list(items))

    def evaluate(self, episodes: Sequence[Episode]) -> TaskResults:
        # grouped: without a meta-graph, same-shaped tasks run fastest in one pass on CPUs too
        return self._adapted(list(episodes), self.params, batching="grouped")

    def _adapted(
        self, episodes: list[Episode], weights: Params, batching: str | None = None
    ) -> TaskResults:
        """Every task's loss and score after the training adaptation from ``weights``,
        without a meta-graph; each rank computes its share and every rank gets every row."""
        ranks = self.gradients.ranks
        learner = self.learner
        mine = learner.evaluate(
            weights, ranks.mine(episodes), learner.train_adaptation, False, batching
        )
        return ranks.gather_results(mine, len(episodes))

    def lookahead_value(
        self, indices: np.ndarray, step_size: float, metric: str, paired: bool, num_tasks: int
    ) -> float:
        gradient = clipped(self.gradients.mean(indices).gradient, self.max_norm)
        lookahead = {
            name: (p if g is None else p - step_size * g).detach()
            for (name, p), g in zip(self.params.items(), gradient)
        }
        episodes = self.reward_tasks(num_tasks)

        def value(weights: Params) -> float:
            results = self._adapted(episodes, weights)
            if metric == "loss":
                return -float(np.mean(results.losses.double().cpu().numpy()))
            return float(np.mean(results.scores.double().cpu().numpy()))

        reward = value(lookahead)
        here = value(self.params) if paired or not math.isfinite(reward) else 0.0
        if paired:
            reward -= here
        if not math.isfinite(here):
            raise Diverged(
                f"the scheduler's reward is {reward:.3g}, and the meta-model itself scores"
                f" {here:.3g} on the reward tasks",
                "the inner loop or the meta-update, not the look-ahead: lower learner.inner_lr"
                " or train.meta_lr",
            )
        if not math.isfinite(reward) or abs(reward) > 1e6:
            raise Diverged(
                f"the look-ahead model diverged (reward {reward:.3g}) while the meta-model"
                " itself scores finitely",
                f"the scheduler's look-ahead step {step_size} is too large: lower it, e.g."
                " scheduler.ats.lookahead_lr=0.01 for MSE losses",
            )
        return reward
