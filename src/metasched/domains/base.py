"""A data domain as one object: its checks, samplers, models, objective, baselines and words.

The loop, learners and schedulers are shared by every domain; whatever differs between, say,
few-shot image classification and few-shot activity regression on assays is a method of the
domain (:data:`metasched.domains.DOMAINS`), not a branch elsewhere.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import torch
from torch import nn

from metasched.data.pool import DataSplits
from metasched.errors import MetaschedError
from metasched.learners import LEARNERS, Objective
from metasched.learners.functional import Params
from metasched.learners.results import TaskResults
from metasched.tasks import Episode, TaskSource

if TYPE_CHECKING:
    from metasched.config import Config
    from metasched.data.registry import DataSpec

ModelBuilder = Callable[["Config"], nn.Module]


class PerTaskBaseline(Protocol):
    """A non-meta baseline: fits each task on its own, with a learner's evaluation call."""

    def evaluate(self, params: Params, episodes: list[Episode]) -> TaskResults: ...


@dataclass(frozen=True)
class NewTask:
    """A user's own task: its episode (query answers unknown), a name per query item, and the
    class names behind labels 0..N-1 (classification)."""

    episode: Episode
    query_names: list[str]
    class_names: list[str] = field(default_factory=list)


class Domain(ABC):
    """A kind of data and everything that depends on it.

    Attributes:
        name: the domain's name (``images``, ``assays``), as data sets declare it.
        objective: the loss, score and metrics.
        models: the networks that fit its inputs, by ``model.name``, each built from a config.
        baselines: per-task baselines that meta-learners are compared with, by the method
            name ``metasched compare`` and ``metasched baseline`` know them by.
    """

    name: ClassVar[str]
    objective: ClassVar[Objective]
    models: ClassVar[dict[str, ModelBuilder]]
    baselines: ClassVar[dict[str, Callable[..., PerTaskBaseline]]] = {}

    def check(self, config: Config) -> None:
        """Rejects settings that do not fit this domain, naming the key and a fix."""
        if config.model.name not in self.models:
            raise MetaschedError(
                f"model.name={config.model.name} does not fit {self.name} (data.name="
                f"{config.data.name}); use model.name={' or '.join(self.models)}"
            )
        misfit = LEARNERS[config.learner.algorithm].misfit(self.objective)
        if misfit:
            raise MetaschedError(f"learner.algorithm={config.learner.algorithm} {misfit}")

    @abstractmethod
    def samplers(self, config: Config, splits: DataSplits[Any]) -> dict[str, TaskSource]:
        """Train (noisy, budgeted), val and test (clean) samplers, and the sampler of the
        schedulers' clean reward tasks (``task.reward_split``): by default half of the
        meta-validation units, the other half selecting checkpoints."""

    def model(self, config: Config) -> nn.Module:
        """The network ``model.name`` names, sized by the data settings."""
        return self.models[config.model.name](config)

    def num_units(self, splits: DataSplits[Any]) -> int:
        """How many training classes a scheduler can track (0: the domain has none)."""
        return 0

    @abstractmethod
    def describe(self, spec: DataSpec) -> str:
        """A heading for a data set of this domain loaded with ``spec``."""

    def input_profile(self, splits: DataSplits[Any]) -> dict[str, Any]:
        """What a model trained on ``splits`` expects of its inputs, kept with its checkpoints
        so that :meth:`new_task` can check a user's files against it (none by default)."""
        return {}

    @abstractmethod
    def new_task(
        self, config: Config, support: Path, query: Path, profile: dict[str, Any] | None = None
    ) -> NewTask:
        """A user's own task from files: the support (inputs with known answers) and the query
        inputs to predict, checked against the training inputs' ``profile`` when known."""

    @abstractmethod
    def prediction_rows(self, predictions: torch.Tensor, task: NewTask) -> list[list[Any]]:
        """The predictions file: a header row, then one row per query item."""
