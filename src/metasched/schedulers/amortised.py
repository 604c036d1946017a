"""Amortised: a per-source predictor of a task's loss, learned from the losses the meta-update
computes anyway, ranks the candidates without evaluating any of them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from metasched.errors import MetaschedError
from metasched.schedulers.base import (
    Candidates,
    Feedback,
    Selection,
    Services,
    TaskScheduler,
    top_k,
)


@dataclass(frozen=True)
class AmortisedOptions:
    """Settings of the amortised scheduler (``scheduler.amortised``).

    Attributes:
        momentum: how much of a source's estimate survives one observation of it.
        exploration: optimism for rarely seen sources: a source's score is its estimate minus
            ``exploration / sqrt(1 + times seen)``, so each is tried before it is judged.
        baseline_momentum: of the running mean loss that estimates are measured against.
    """

    momentum: float = 0.9
    exploration: float = 0.5
    baseline_momentum: float = 0.99

    def __post_init__(self) -> None:
        if not 0 <= self.momentum < 1 or not 0 <= self.baseline_momentum < 1:
            raise MetaschedError("scheduler.amortised momentums must lie in [0, 1)")
        if self.exploration < 0:
            raise MetaschedError("scheduler.amortised.exploration must be >= 0")


class AmortisedScheduler(TaskScheduler):
    """Trains on the B candidates whose sources (classes, or the assay) predict the lowest
    adapted query loss; measures nothing.

    Noise with a cause lives in sources: a mislabelled class spoils every task that draws it,
    a broken assay every episode of it. The meta-update already computes each trained task's
    adapted query loss; this scheduler keeps, per source, an exponential moving average of the
    losses of the tasks it appeared in, relative to the running mean loss (so the estimates do
    not drift as training lowers every loss). A candidate's predicted loss is the mean of its
    sources' estimates, less an exploration bonus for sources seen rarely; the B lowest are
    trained on. Ranking costs no adaptation: an iteration costs a uniform one plus drawing the
    rejected candidates. Per-task noise (a coin flip per episode) has no source, so there it
    is uniform sampling at that small extra cost.

    In the spirit of amortised task selection (MPTS and PDTS, 2025: a learned predictor of a
    task's risk ranks candidates without evaluating each one), with the simplest predictor
    that can represent source-level noise: one additive value per source.

    Example:
        >>> scheduler = AmortisedScheduler()
        >>> scheduler.predicted([(0, 1), (2, 3)])
        tensor([-0.5000, -0.5000], dtype=torch.float64)
    """

    name = "amortised"
    Options = AmortisedOptions

    def __init__(self, options: AmortisedOptions | None = None, setup: Any = None) -> None:
        super().__init__(options, setup)
        self.estimates: dict[int, float] = {}
        self.seen: dict[int, int] = {}
        self.mean_loss: float | None = None

    def predicted(self, sources: list[tuple[int, ...]]) -> torch.Tensor:
        """(P,) each candidate's predicted relative loss, exploration bonus included."""
        bonus = self.options.exploration

        def score(unit: int) -> float:
            return self.estimates.get(unit, 0.0) - bonus / math.sqrt(1 + self.seen.get(unit, 0))

        values = [np.mean([score(u) for u in units]) for units in sources]
        return torch.tensor(values, dtype=torch.float64)

    def choose(
        self, pool: Candidates, batch_size: int, rng: np.random.Generator, services: Services
    ) -> Selection:
        sources = [e.source for e in pool.require("episodes")]
        predicted = self.predicted(sources)
        indices = top_k(-predicted + 1e-9 * torch.from_numpy(rng.random(pool.size)), batch_size)
        return Selection(
            indices,
            diagnostics={"predicted_spread": float(predicted.max() - predicted.min())},
            memo=[sources[i] for i in indices],
        )

    def observe(self, feedback: Feedback) -> dict[str, Any]:
        """Moves the trained tasks' sources towards their observed relative losses."""
        o = self.options
        trained = feedback.trained & np.isfinite(feedback.losses)
        if not trained.any():
            return {}
        batch = float(feedback.losses[trained].mean())
        if self.mean_loss is None:
            self.mean_loss = batch
        for units, loss in zip(
            [s for s, t in zip(feedback.selection.memo, trained) if t], feedback.losses[trained]
        ):
            relative = float(loss) - self.mean_loss
            for unit in units:
                seen = self.seen.get(unit, 0)
                old = self.estimates.get(unit, relative)
                self.estimates[unit] = (
                    relative if seen == 0 else o.momentum * old + (1 - o.momentum) * relative
                )
                self.seen[unit] = seen + 1
        self.mean_loss = o.baseline_momentum * self.mean_loss + (1 - o.baseline_momentum) * batch
        return {}

    def state_dict(self) -> dict[str, Any]:
        units = sorted(self.estimates)
        return {
            "units": torch.tensor(units, dtype=torch.long),
            "estimates": torch.tensor([self.estimates[u] for u in units], dtype=torch.float64),
            "seen": torch.tensor([self.seen[u] for u in units], dtype=torch.long),
            "mean_loss": math.nan if self.mean_loss is None else self.mean_loss,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        units = [int(u) for u in state["units"]]
        self.estimates = dict(zip(units, (float(v) for v in state["estimates"])))
        self.seen = dict(zip(units, (int(v) for v in state["seen"])))
        mean = float(state["mean_loss"])
        self.mean_loss = None if math.isnan(mean) else mean
