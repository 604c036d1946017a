"""GCP: greedy class-pair sampling (Liu et al., "Adaptive task sampling for meta-learning",
ECCV 2020)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from metasched.errors import MetaschedError
from metasched.learners.probes import query_confusion
from metasched.schedulers.base import (
    Candidates,
    Feedback,
    Selection,
    Services,
    TaskScheduler,
    draw,
)


@dataclass(frozen=True)
class GCPOptions:
    """Settings of GCP (``scheduler.gcp``).

    Attributes:
        discount: τ, how much of a pair's old log-potential survives an update.
        step: α, how strongly a pair's observed confusion raises its potential.
    """

    discount: float = 0.7
    step: float = 2.0

    def __post_init__(self) -> None:
        if not 0 <= self.discount <= 1 or self.step < 0:
            raise MetaschedError("scheduler.gcp needs 0 <= discount <= 1 and step >= 0")


class GCPScheduler(TaskScheduler):
    """Tasks whose class pairs the meta-model confuses are drawn more often.

    GCP keeps a potential C(i, j) > 0 for every pair of training classes, initially 1. A task
    made of classes S is drawn with probability ∝ Π_{i<j ∈ S} C(i, j). After the meta-model
    trains on a task, each of its pairs is updated with the pair's confusion on that task's
    query set after adaptation, p̄_ij = (P(j | i) + P(i | j)) / 2 from the mean predicted
    class probabilities: C(i, j) <- C(i, j)^τ exp(α p̄_ij). Pairs the model keeps confusing
    grow; pairs it separates decay back towards 1.

    Simplification: Liu et al. build each task class by class from the potentials; here the
    loop draws a pool of candidate tasks (classes uniformly at random) and GCP draws B of them
    with probabilities ∝ their potentials, which approximates the same law as the pool grows.
    The BASS authors' GCP code (docs/schedulers.md) does the same with a top-k. The
    confusions come from an extra adaptation of each chosen task at θ0 (a forward pass per
    task, :func:`metasched.learners.probes.query_confusion`). Tasks must be made of classes.
    """

    name = "gcp"
    Options = GCPOptions

    def __init__(self, options: GCPOptions | None = None, setup: Any = None) -> None:
        super().__init__(options, setup)
        if self.setup.num_classes < 1:
            raise MetaschedError(
                "scheduler gcp samples pairs of classes, and these tasks are not made of"
                " classes (assays); choose another scheduler"
            )
        classes = self.setup.num_classes
        self.log_potential = torch.zeros(classes, classes, dtype=torch.float64)

    def task_log_potential(self, classes: np.ndarray) -> torch.Tensor:
        """(P,) Σ over a task's class pairs of log C."""
        index = torch.from_numpy(classes.astype(np.int64))
        block = self.log_potential[index.unsqueeze(2), index.unsqueeze(1)]  # (P, N, N)
        return torch.triu(block, diagonal=1).sum(dim=(1, 2))

    def choose(
        self, pool: Candidates, batch_size: int, rng: np.random.Generator, services: Services
    ) -> Selection:
        episodes = pool.require("episodes")
        classes = np.array([e.source for e in episodes])
        probabilities = torch.softmax(self.task_log_potential(classes), dim=0)
        indices = draw(probabilities, batch_size, False, rng)
        learner, params = services.learner, services.params
        confusion = services.map_rows(
            lambda i: query_confusion(learner, params, episodes[int(i)]).cpu(), list(indices)
        )
        memo = (classes[indices], confusion.double())
        return Selection(indices, probabilities, policy=probabilities.float(), memo=memo)

    def observe(self, feedback: Feedback) -> dict[str, Any]:
        """Updates the potentials of the trained tasks' class pairs."""
        classes, confusion = feedback.selection.memo
        trained = feedback.trained
        o = self.options
        for task_classes, matrix in zip(classes[trained], confusion[torch.from_numpy(trained)]):
            index = torch.from_numpy(task_classes.astype(np.int64))
            mutual = (matrix + matrix.T) / 2
            mutual.fill_diagonal_(0)
            old = self.log_potential[index.unsqueeze(1), index.unsqueeze(0)]
            off = ~torch.eye(len(index), dtype=torch.bool)
            new = torch.where(off, o.discount * old + o.step * mutual, old)
            self.log_potential[index.unsqueeze(1), index.unsqueeze(0)] = new
        return {"log_potential_max": float(self.log_potential.max())}

    def state_dict(self) -> dict[str, Any]:
        return {"log_potential": self.log_potential.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.log_potential = state["log_potential"].clone()
