"""PAML: probabilistic active meta-learning (Kaddour et al., NeurIPS 2020), simplified."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from metasched.errors import MetaschedError
from metasched.learners.probes import embed
from metasched.schedulers.base import (
    Candidates,
    Feedback,
    Selection,
    Services,
    TaskScheduler,
    top_k,
)


@dataclass(frozen=True)
class PAMLOptions:
    """Settings of PAML (``scheduler.paml``).

    Attributes:
        memory: how many recently trained tasks' embeddings novelty is measured against.
        neighbours: k of the k-nearest-neighbour novelty.
    """

    memory: int = 200
    neighbours: int = 5

    def __post_init__(self) -> None:
        if self.memory < 1 or self.neighbours < 1:
            raise MetaschedError("scheduler.paml.memory and neighbours must be at least 1")


class PAMLScheduler(TaskScheduler):
    """Trains on the candidates that are most novel in a task-embedding space.

    PAML learns a latent embedding of each task jointly with the meta-model (amortised
    variational inference) and picks the candidate task whose embedding has the highest
    self-information under the embeddings of the tasks trained on so far: the least
    explored region of task space. Simplifications: the embedding is not learned by a
    separate inference network but read off the meta-model itself (the normalised mean
    backbone feature of the task's inputs at θ0, :func:`metasched.learners.probes.embed`), and
    the density is a
    k-nearest-neighbour estimate over the last ``memory`` trained tasks, so the novelty of a
    candidate is its mean distance to its k nearest remembered embeddings (monotone in the
    estimate's -log density). The B most novel candidates are trained on; with an empty
    memory, the first B. Remembered embeddings were computed with older θ0s, as PAML's
    latents are inferred by an older encoder. The embedding ignores labels, so PAML is blind to
    label noise by design: it explores, it does not filter.
    """

    name = "paml"
    Options = PAMLOptions

    def __init__(self, options: PAMLOptions | None = None, setup: Any = None) -> None:
        super().__init__(options, setup)
        self.memory: torch.Tensor | None = None

    def novelty(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(P,) mean distance to the k nearest remembered embeddings (zeros when none)."""
        if self.memory is None or len(self.memory) == 0:
            return torch.zeros(len(embeddings))
        distances = torch.cdist(embeddings.double(), self.memory.double())
        k = min(self.options.neighbours, distances.shape[1])
        return distances.topk(k, dim=1, largest=False).values.mean(dim=1)

    def choose(
        self, pool: Candidates, batch_size: int, rng: np.random.Generator, services: Services
    ) -> Selection:
        learner, params = services.learner, services.params
        embeddings = services.map_rows(
            lambda e: embed(learner, params, [e])[0], pool.require("episodes")
        ).cpu()
        novelty = self.novelty(embeddings)
        indices = top_k(novelty, batch_size)
        return Selection(
            indices,
            diagnostics={"novelty": float(novelty[indices].mean())},
            memo=embeddings[torch.from_numpy(indices)].detach(),
        )

    def observe(self, feedback: Feedback) -> dict[str, Any]:
        """Remembers the trained tasks' embeddings (first in, first out)."""
        trained = feedback.selection.memo[torch.from_numpy(feedback.trained)]
        if len(trained):
            stacked = trained if self.memory is None else torch.cat([self.memory, trained])
            self.memory = stacked[-self.options.memory :]
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"memory": None if self.memory is None else self.memory.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        memory = state["memory"]
        self.memory = None if memory is None else memory.clone()
