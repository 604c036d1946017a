"""The contract between the training loop and a task scheduler.

Each iteration the loop draws a pool of P candidate tasks and measures only the
:class:`Feature` s the scheduler declares. The scheduler's :meth:`TaskScheduler.choose`
returns the B candidates (and optional loss weights) the meta-model trains on; it may call the
loop's :class:`PoolServices` for what needs the model and the data (a look-ahead model's value
on reward tasks, per-candidate rewards, query confusions). After the meta-update the loop
tells it what was trained on (:meth:`TaskScheduler.observe`). A scheduler keeps its own state
for exact resume (:meth:`TaskScheduler.state_dict`) and has its own typed options
(``Options``, the ``scheduler.<name>`` section of a config).

Schedulers work on tensors and arrays only, so they serve any training loop.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
import torch

from metasched.stats import PoolStats


class Feature(enum.Flag):
    """What the loop measures about the candidates, on request.

    ``LOSSES``: each candidate's query loss after adaptation. ``GRADIENTS``: per-layer norms
    and inner products of the support and query gradients at θ0 (with the losses).
    ``EMBEDDINGS``: a task embedding (mean backbone features of the task's images).
    ``CONTEXTS``: the flat parameters after one support step and one more query step (BASS).
    ``CLASSES``: which classes of the training split each candidate is built from.
    ``NOISE_FLAGS``: the ground truth of which candidates are noisy: for the oracle only.
    """

    NONE = 0
    LOSSES = enum.auto()
    GRADIENTS = enum.auto()
    EMBEDDINGS = enum.auto()
    CONTEXTS = enum.auto()
    CLASSES = enum.auto()
    NOISE_FLAGS = enum.auto()


@dataclass(frozen=True)
class Pool:
    """What a scheduler may know about the current candidates.

    Attributes:
        size: the number of candidates P.
        progress: the fraction of meta-updates done, in [0, 1].
        stats: losses (and, with ``GRADIENTS``, gradient statistics) of the candidates.
        iteration: iterations done so far, warm-up included.
        total_iterations: warm-up plus meta-updates.
        embeddings: (P, D) task embeddings (``EMBEDDINGS``).
        contexts: (P, 2, D) flat parameters after the support step and after the query step
            (``CONTEXTS``).
        classes: (P, N) class indices of the training split (``CLASSES``).
        noisy: ground-truth noise flags (``NOISE_FLAGS``); a real scheduler never sees them.
    """

    size: int
    progress: float = 0.0
    stats: PoolStats | None = None
    iteration: int = 0
    total_iterations: int = 1
    embeddings: torch.Tensor | None = None
    contexts: torch.Tensor | None = None
    classes: np.ndarray | None = None
    noisy: np.ndarray | None = None

    def require(self, name: str) -> Any:
        """The named field, or an error saying that the scheduler did not declare it."""
        value = getattr(self, name)
        if value is None:
            raise ValueError(f"the pool carries no {name}: declare the feature that computes it")
        return value


Update = Literal["step", "skip", "step_and_restore"]


@dataclass(frozen=True)
class Selection:
    """The chosen candidates and how the meta-model learns from them.

    Attributes:
        indices: the B chosen candidates (a candidate may repeat when drawn with replacement).
        probabilities: (P,) the distribution they were drawn from, if any.
        weights: (B,) coefficients of the chosen tasks' losses in the meta-loss; None means
            equal weights 1/B (the mean).
        update: ``step``: one meta-update on them; ``skip``: θ0 stays as it is (a scheduler
            warm-up); ``step_and_restore``: a step whose parameters are then restored (only
            the optimiser's moments move, as the reference's warm-up).
        policy: (P,) the scheduler's own probabilities before any sharpening, for diagnostics.
        log_prob: log-probability of the draw, differentiable w.r.t. the scheduler's
            parameters (REINFORCE).
        diagnostics: numbers to log with the iteration (e.g. a reward).
    """

    indices: np.ndarray
    probabilities: torch.Tensor | None = None
    weights: np.ndarray | None = None
    update: Update = "step"
    policy: torch.Tensor | None = None
    log_prob: torch.Tensor | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Trained:
    """What the meta-model was just trained on: the chosen candidates, their adapted query
    losses and scores (accuracy, or -MSE) at the θ0 before the update."""

    indices: np.ndarray
    losses: np.ndarray
    scores: np.ndarray
    progress: float


class PoolServices(Protocol):
    """What the loop computes for a scheduler during :meth:`TaskScheduler.choose`, at the
    current θ0 and pool."""

    def lookahead_value(
        self, indices: np.ndarray, step_size: float, metric: str, paired: bool, num_tasks: int
    ) -> float:
        """The value on ``num_tasks`` fresh clean reward tasks of θ̃ = θ0 - β ∇ (mean adapted
        query loss of the candidates ``indices``), β = ``step_size``; ``metric`` is ``loss``
        (minus the query loss) or ``score``; ``paired`` subtracts θ0's value on the same tasks.
        """
        ...

    def lookahead_losses(self, indices: np.ndarray, num_tasks: int, source: str) -> np.ndarray:
        """Per candidate i of ``indices``: the mean query loss, over ``num_tasks`` tasks from
        ``source`` (``pool``: this pool's candidates, ``reward``: the reward split), of the
        candidate's two-step look-ahead model (its ``CONTEXTS``) after one SGD step of the
        whole network on each task's support."""
        ...

    def query_confusion(self, indices: np.ndarray) -> torch.Tensor:
        """(len(indices), N, N): per candidate, the mean predicted class probabilities of its
        query examples of each true class, after adaptation at θ0."""
        ...


@dataclass(frozen=True)
class SchedulerSetup:
    """Facts about the run a scheduler may need to build itself."""

    num_layers: int = 10
    num_classes: int = 0
    n_way: int = 5
    batch_size: int = 2
    iterations: int = 1
    seed: int = 0


@dataclass(frozen=True)
class NoOptions:
    """A scheduler without settings."""


class TaskScheduler(ABC):
    """Chooses ``batch_size`` of the pool's candidates each iteration.

    Subclasses set ``name`` (the registry key), ``features`` (what the pool must carry) and
    ``Options`` (a frozen dataclass of settings: the config's ``scheduler.<name>`` section),
    and build themselves with ``cls(options, setup)``.
    """

    name: ClassVar[str]
    #: Bumped in the commit that changes a number this scheduler makes a run record.
    results_version: ClassVar[int] = 1
    features: Feature = Feature.NONE
    Options: ClassVar[type] = NoOptions
    #: Draw candidates until the pool holds ``batch_size`` clean ones (the oracle).
    needs_clean_candidates: ClassVar[bool] = False
    #: Whether choosing needs a pool larger than the meta-batch (P > B); a scheduler whose
    #: draw is uniform over the pool (or extends it itself) does not.
    needs_larger_pool: ClassVar[bool] = True

    def __init__(self, options: Any = None, setup: SchedulerSetup | None = None) -> None:
        self.options: Any = options if options is not None else self.Options()
        self.setup = setup or SchedulerSetup()

    @property
    def warmup_iterations(self) -> int:
        """Iterations before the first meta-update in which only the scheduler learns."""
        return 0

    @abstractmethod
    def choose(
        self, pool: Pool, batch_size: int, rng: np.random.Generator, services: PoolServices
    ) -> Selection:
        """The candidates the meta-model learns from this iteration."""

    def observe(self, trained: Trained) -> dict[str, Any]:
        """Told what was trained on, after each meta-update; returns diagnostics to log."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must hold to resume this scheduler exactly."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 (stateless default)
        """Restores :meth:`state_dict`."""


def uniform_draw(pool_size: int, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """B distinct candidates, uniformly (the whole pool, in order, when P = B)."""
    if pool_size == batch_size:
        return np.arange(batch_size)
    return rng.choice(pool_size, batch_size, replace=False)


def top_k(values: np.ndarray | torch.Tensor, k: int) -> np.ndarray:
    """Indices of the ``k`` largest values, largest first (ties: the lower index first)."""
    array = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values)
    return np.argsort(-array, kind="stable")[:k]


def draw(
    probabilities: torch.Tensor, count: int, replace: bool, rng: np.random.Generator
) -> np.ndarray:
    """Draws ``count`` indices; without replacement, one at a time from the renormalised rest.

    Renormalises in log space; should fewer than ``count`` candidates have a non-zero
    probability (a sharply peaked float distribution), the rest are drawn uniformly among the
    zero-probability ones instead of failing.
    """
    log_p = torch.log(probabilities.detach().double().clamp_min(0)).numpy()
    if not np.isfinite(log_p).any():
        raise ValueError("draw: every probability is zero")
    if replace:
        return rng.choice(len(log_p), count, replace=True, p=_normalised(log_p))
    if count > len(log_p):
        raise ValueError(f"draw: {count} distinct candidates asked from a pool of {len(log_p)}")
    chosen: list[int] = []
    remaining = log_p.copy()
    for _ in range(count):
        p = _normalised(remaining)
        if not np.isfinite(remaining).any():  # only zero-probability candidates are left
            rest = np.flatnonzero(np.isneginf(remaining) & ~np.isin(np.arange(len(log_p)), chosen))
            p = np.zeros(len(log_p))
            p[rest] = 1.0 / len(rest)
        index = int(rng.choice(len(log_p), p=p))
        chosen.append(index)
        remaining[index] = -np.inf
    return np.array(chosen)


def _normalised(log_p: np.ndarray) -> np.ndarray:
    """exp(log_p) / Σ exp(log_p), stable; all -inf gives zeros."""
    finite = np.isfinite(log_p)
    if not finite.any():
        return np.zeros(len(log_p))
    p = np.exp(log_p - log_p[finite].max())
    return p / p.sum()
