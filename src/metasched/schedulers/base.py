"""The contract between a training loop and a task scheduler.

Each iteration the loop asks the scheduler for the pool of candidate tasks
(:meth:`TaskScheduler.candidates`: by default P fresh draws from the training tasks), measures
what the scheduler declares it reads (``measures``: the candidates' adapted query losses, and
their per-layer gradient statistics; the meta-update reuses that work), and lets it choose the
B candidates the meta-model learns from (:meth:`TaskScheduler.choose`), with a small toolbox at
hand (:class:`Services`: the learner and θ0, fresh clean reward tasks, a way to compute
anything per candidate on every process, cheap adapted losses of any tasks, and the value of
a look-ahead model). A scheduler that needs something else (task embeddings, look-ahead
losses, confusions) computes it itself, e.g. with :mod:`metasched.learners.probes`. After
the meta-update the loop tells it, choice by choice, what was trained and at which loss
(:meth:`TaskScheduler.observe`, a :class:`Feedback`); tasks the loop added itself are not
among them. A scheduler keeps its own state for exact resume
(:meth:`TaskScheduler.state_dict`) and has typed options (``Options``, the
``scheduler.<name>`` section of a config).

A new scheduler is one file with a :class:`TaskScheduler` subclass and an entry in
:data:`metasched.schedulers.SCHEDULERS`.

Example:
    >>> class LowestLoss(TaskScheduler):
    ...     name = "lowest-loss"
    ...     measures = Measure.LOSSES
    ...     def choose(self, pool, batch_size, rng, services):
    ...         return Selection(top_k(-pool.require("stats").query_loss, batch_size))
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, TypeVar

import numpy as np
import torch

from metasched.learners.base import MetaLearner
from metasched.learners.functional import Params
from metasched.learners.results import TaskResults
from metasched.stats import PoolStats
from metasched.tasks.episode import Episode, TaskSource

Item = TypeVar("Item")


class Measure(enum.Flag):
    """What the loop measures about the candidates, on request, at θ0.

    ``LOSSES``: each candidate's query loss after adaptation. ``GRADIENTS``: per-layer norms
    and inner products of the support and query gradients (with the losses). The meta-update
    reuses the measured candidates' graphs where memory allows.
    """

    NONE = 0
    LOSSES = enum.auto()
    GRADIENTS = enum.auto()


@dataclass(frozen=True)
class Candidates:
    """The current pool, as a scheduler sees it.

    Attributes:
        size: the number of candidates P.
        progress: the fraction of meta-updates done, in [0, 1] (of the compute budget, in a
            run with ``train.budget``).
        stats: what was measured (``measures``): losses, and gradient statistics.
        iteration: iterations done so far, warm-up included.
        total_iterations: warm-up plus meta-updates.
        episodes: the candidate tasks (support and query sets, and ``source``: the classes or
            the assay each came from). Their ``noisy`` flag is ground truth that only the
            oracle, a reference and not a scheduler, may read.
    """

    size: int
    progress: float = 0.0
    stats: PoolStats | None = None
    iteration: int = 0
    total_iterations: int = 1
    episodes: Sequence[Episode] = ()

    def require(self, name: str) -> Any:
        """The named field, or an error saying that the scheduler did not ask for it."""
        value = getattr(self, name)
        if value is None or (name == "episodes" and not value):
            raise ValueError(f"the candidates carry no {name}: declare the measure that gives it")
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
        memo: anything the scheduler wants back in :meth:`TaskScheduler.observe` with this
            selection (what it computed about its choices), so it keeps no copy in between.
        replay: tasks from outside this pool to train on as well (e.g. candidates kept from
            earlier iterations); their choices follow ``indices`` in ``weights`` and in the
            :class:`Feedback`.
    """

    indices: np.ndarray
    probabilities: torch.Tensor | None = None
    weights: np.ndarray | None = None
    update: Update = "step"
    policy: torch.Tensor | None = None
    log_prob: torch.Tensor | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)
    memo: Any = None
    replay: Sequence[Episode] = ()


@dataclass(frozen=True)
class Feedback:
    """What became of a selection in the meta-update, one entry per choice (``indices``, then
    ``replay``).

    Attributes:
        selection: the scheduler's own selection, as :meth:`TaskScheduler.choose` returned it.
        trained: (B,) whether each choice was trained on (False: dropped, e.g. a non-finite
            loss with ``train.on_nonfinite=skip``).
        losses: (B,) each choice's adapted query loss at the θ0 before the update (NaN where
            not trained).
        scores: (B,) the same for the objective's score (accuracy, or pearson R²).
        progress: the fraction of meta-updates done after this one (of the compute budget
            spent before it, in a run with ``train.budget``).
    """

    selection: Selection
    trained: np.ndarray
    losses: np.ndarray
    scores: np.ndarray
    progress: float


class Services(Protocol):
    """The loop's toolbox for a scheduler during :meth:`TaskScheduler.choose`, at the current
    θ0 and candidates.

    Attributes:
        learner: the meta-learner (adapts, predicts, evaluates; see also
            :mod:`metasched.learners.probes`).
        params: θ0, by name.
    """

    learner: MetaLearner
    params: Params

    def reward_tasks(self, count: int) -> list[Episode]:
        """``count`` fresh clean tasks of the reward split (``task.reward_split``), on the
        loop's device, drawn from the run's training stream."""
        ...

    def evaluate(self, episodes: Sequence[Episode]) -> TaskResults:
        """Each task's query loss and score after the training adaptation from θ0, without a
        meta-graph (cheap: no candidate's graph is kept); every process gets every row."""
        ...

    def map_rows(
        self, compute: Callable[[Item], torch.Tensor], items: Sequence[Item]
    ) -> torch.Tensor:
        """``compute`` of every item, stacked: each of the loop's processes computes its share
        and every process gets every row."""
        ...

    def lookahead_value(
        self, indices: np.ndarray, step_size: float, metric: str, paired: bool, num_tasks: int
    ) -> float:
        """The value on ``num_tasks`` fresh clean reward tasks of θ̃ = θ0 - β ∇ (mean adapted
        query loss of the candidates ``indices``), β = ``step_size``; ``metric`` is ``loss``
        (minus the query loss) or ``score``; ``paired`` subtracts θ0's value on the same tasks.
        The candidates' meta-gradients are shared with the meta-update."""
        ...


@dataclass(frozen=True)
class SchedulerSetup:
    """Facts about the run a scheduler may need to build itself.

    ``num_classes``: the training classes a scheduler can track (0: the tasks are not made of
    classes, e.g. assays).
    """

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

    Subclasses set ``name`` (the registry key), ``measures`` (what the loop must measure of
    the candidates; an instance may set its own in ``__init__``, or change it in
    :meth:`candidates`, which the loop calls before it reads ``measures`` each iteration: a
    scheduler that does so says in its selection's diagnostics whether it measured,
    ``measured`` 0 or 1, so that equal-compute runs charge each iteration at its phase's
    cost, :mod:`metasched.training.cost`) and ``Options`` (a frozen
    dataclass of settings: the config's ``scheduler.<name>`` section), build themselves with
    ``cls(options, setup)`` (raising :class:`metasched.errors.MetaschedError` for a setup
    they cannot serve) and may draw their own candidates (:meth:`candidates`).
    """

    name: ClassVar[str]
    #: Bumped in the commit that changes a number this scheduler makes a run record.
    results_version: ClassVar[int] = 1
    measures: Measure = Measure.NONE
    Options: ClassVar[type] = NoOptions
    #: Whether choosing needs a pool larger than the meta-batch (P > B); a scheduler whose
    #: draw is uniform over the pool (or extends it itself) does not.
    needs_larger_pool: ClassVar[bool] = True
    #: Whether some of its meta-update iterations measure nothing (records ``measured: 0``)
    #: and so cost less than the others: its runs then stop at a compute budget.
    has_light_iterations: ClassVar[bool] = False

    def __init__(self, options: Any = None, setup: SchedulerSetup | None = None) -> None:
        self.options: Any = options if options is not None else self.Options()
        self.setup = setup or SchedulerSetup()

    @property
    def warmup_iterations(self) -> int:
        """Iterations before the first meta-update in which only the scheduler learns."""
        return 0

    def candidates(
        self, tasks: TaskSource, size: int, batch_size: int, rng: np.random.Generator
    ) -> list[Episode]:
        """This iteration's pool: by default ``size`` fresh draws from the training tasks."""
        return [tasks.sample(rng) for _ in range(size)]

    @abstractmethod
    def choose(
        self, pool: Candidates, batch_size: int, rng: np.random.Generator, services: Services
    ) -> Selection:
        """The candidates the meta-model learns from this iteration."""

    def observe(self, feedback: Feedback) -> dict[str, Any]:
        """Told what became of each choice, after each meta-update; returns diagnostics."""
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
