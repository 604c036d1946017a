"""What the training loop computes for a scheduler during one iteration (PoolServices)."""

from __future__ import annotations

import math

import numpy as np
import torch

from metasched.errors import Diverged
from metasched.learners.base import MetaLearner, Params
from metasched.tasks.episode import Episode, TaskSource
from metasched.training.gradients import CandidateGradients, clipped


class LoopServices:
    """:class:`metasched.schedulers.PoolServices` at one iteration's θ0 and pool.

    Args:
        learner: the meta-learner.
        params: θ0.
        gradients: the candidates' meta-gradients (shared with the meta-update).
        reward_tasks: the sampler of clean reward tasks.
        rng: the run's training stream (reward tasks are drawn from it).
        device: where episodes go.
        contexts: (P, 2, D) the candidates' two-step parameters, if the pool carries them.
        max_norm: the meta-update's gradient clipping (``train.clip_grad_norm``), which the
            look-ahead step takes too.
    """

    def __init__(
        self,
        learner: MetaLearner,
        params: Params,
        gradients: CandidateGradients,
        reward_tasks: TaskSource,
        rng: np.random.Generator,
        device: torch.device,
        contexts: torch.Tensor | None = None,
        max_norm: float | None = None,
    ) -> None:
        self.learner = learner
        self.params = params
        self.gradients = gradients
        self.reward_tasks = reward_tasks
        self.rng = rng
        self.device = device
        self.contexts = contexts
        self.max_norm = max_norm
        self.reward_tasks_drawn = 0

    def _reward_episodes(self, count: int) -> list[Episode]:
        self.reward_tasks_drawn += count
        return [self.reward_tasks.sample(self.rng).to(self.device) for _ in range(count)]

    def lookahead_value(
        self, indices: np.ndarray, step_size: float, metric: str, paired: bool, num_tasks: int
    ) -> float:
        gradient = clipped(self.gradients.mean(indices).gradient, self.max_norm)
        lookahead = {
            name: (p if g is None else p - step_size * g).detach()
            for (name, p), g in zip(self.params.items(), gradient)
        }
        episodes = self._reward_episodes(num_tasks)
        learner = self.learner

        def value(weights: Params) -> float:
            ranks = self.gradients.ranks  # each rank scores its share of the reward tasks
            mine = learner.evaluate(
                weights, ranks.mine(episodes), learner.train_adaptation, metrics=False
            )
            results = ranks.gather_results(mine, len(episodes))
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

    def lookahead_losses(self, indices: np.ndarray, num_tasks: int, source: str) -> np.ndarray:
        if self.contexts is None:
            raise ValueError("lookahead_losses needs the CONTEXTS feature")
        pool = self.contexts.shape[0]
        tasks: list[list[Episode]] = []  # drawn for every index on every rank: one stream
        for _ in indices:
            if source == "pool":
                picks = self.rng.choice(pool, min(num_tasks, pool), replace=False)
                tasks.append([self.gradients.candidates[int(i)] for i in picks])
            elif source == "reward":
                tasks.append(self._reward_episodes(num_tasks))
            else:
                raise ValueError(f"lookahead_losses: source {source!r} is not pool or reward")

        def loss(k: int) -> torch.Tensor:
            assert self.contexts is not None
            start = self.learner.unflatten(self.contexts[int(indices[k]), 1].to(self.device))
            value = np.mean([self.learner.one_step_query_loss(start, e) for e in tasks[k]])
            return torch.tensor(value, dtype=torch.float64)

        return self.gradients.ranks.map_rows(loss, range(len(indices))).numpy()

    def query_confusion(self, indices: np.ndarray) -> torch.Tensor:
        candidates = self.gradients.candidates
        return self.gradients.ranks.map_rows(
            lambda i: self.learner.query_confusion(self.params, candidates[int(i)]).cpu(),
            list(indices),
        )
