"""Comparisons at equal compute: every method stops at the same cost.

``metasched compare --budget 1x,3x,10x``: budget ``k``x is ``k`` times the cost of the preset's
uniform run (``train.iterations`` uniform iterations). Each method's cost per iteration is
measured against uniform sampling in one process (:mod:`metasched.training.cost`) and kept in
``OUT/costs.json``, so that a resumed or repeated comparison plans the same runs (delete the
file to measure again). A method with a constant learning rate runs once, to the largest
budget, and is tested at each smaller one (``train.test_at``: its best checkpoint so far); a
method whose learning rate decays (``<method>+cosine``) runs once per budget, decayed to it,
as a careful user with that budget would run it. Every method validates at the same cost
intervals (the preset's ``val_every`` uniform iterations). A method whose iterations differ in
cost (a scheduler that measures only some of them, ``gated``: measured as ``varies``) stops at
the compute itself (``train.budget``: each iteration charged by its phase).

This module plans the runs; :mod:`metasched.compare.budget_report` reads them back into the
tables, the verdict and the plot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

from metasched.compare.methods import Job
from metasched.config import config_from_dict
from metasched.config.schema import TrainConfig
from metasched.errors import MetaschedError
from metasched.training.cost import IterationCost


def parse_budgets(text: str) -> list[float]:
    """``"1x,3x,10x"`` to [1.0, 3.0, 10.0] (sorted; the ``x`` is optional)."""
    budgets = []
    for part in text.split(","):
        value = part.strip().removesuffix("x")
        try:
            budgets.append(float(value))
        except ValueError:
            raise MetaschedError(
                f"--budget {text!r}: {part.strip()!r} is not a multiple of the uniform run's"
                " cost; write e.g. --budget 1x,3x,10x"
            ) from None
    if not budgets or min(budgets) <= 0:
        raise MetaschedError(f"--budget {text!r}: give positive multiples, e.g. 1x,3x,10x")
    return sorted(set(budgets))


@dataclass(frozen=True)
class BudgetJob:
    """A run of an equal-compute comparison and the budgets it answers for: the meta-update
    count at which it reaches each (its last one is its own end)."""

    job: Job
    steps: dict[float, int]


def budget_jobs(
    jobs: list[Job], budgets: list[float], preset: TrainConfig, costs: dict[str, IterationCost]
) -> list[BudgetJob]:
    """Turns each method's jobs (one per seed) into runs that stop at the budgets, each
    validated and checkpointed at the preset's intervals of compute.

    Args:
        jobs: the comparison's jobs, as planned without budgets.
        budgets: multiples of the preset's uniform run's cost (its ``train.iterations``).
        preset: the preset's ``train`` settings.
        costs: each method's :class:`IterationCost`.
    """
    units = preset.iterations
    planned = []
    for job in jobs:
        if job.baseline:  # trains nothing: one run answers every budget
            planned.append(BudgetJob(job, {b: 0 for b in budgets}))
            continue
        cost = costs[job.method]
        steps = {b: cost.steps_within(b * units) for b in budgets}
        steps = {b: s for b, s in steps.items() if s >= 1}  # a warm-up may outlast a budget
        if not steps:
            raise MetaschedError(
                f"{job.method}: no budget covers its warm-up of {cost.warmup_iterations}"
                f" iterations ({cost.warmup:.2f} uniform iterations each); give larger budgets"
            )
        train = job.config.train
        every = max(1, round(preset.val_every / cost.step))
        common = [
            f"train.val_every={every}",
            f"train.checkpoint_every={max(1, round(preset.checkpoint_every / cost.step))}",
        ]
        if cost.varies:  # stop at the compute itself: its meta-updates' cost is not known
            planned += _by_compute(job, cost, steps, units, common)
            continue
        if train.lr_schedule == "constant":
            largest = max(steps.values())
            test_at = sorted({s for s in steps.values() if s < largest})
            config = config_from_dict(
                job.config.to_dict(),
                [*common, f"train.iterations={largest}", f"train.test_at={test_at}"],
            )
            planned.append(BudgetJob(replace(job, config=config), steps))
            continue
        for budget in steps:
            config = config_from_dict(
                job.config.to_dict(), [*common, f"train.iterations={steps[budget]}"]
            )
            run_dir = _budget_dir(job, budget)
            planned.append(
                BudgetJob(replace(job, config=config, run_dir=run_dir), {budget: steps[budget]})
            )
    return planned


def reachable_budgets(planned: list[BudgetJob]) -> dict[str, set[float]]:
    """The budgets each method's planned runs answer for, finished or not (a budget missing
    from a method's set is one its warm-up outlasts)."""
    reachable: dict[str, set[float]] = {}
    for item in planned:
        reachable.setdefault(item.job.method, set()).update(item.steps)
    return reachable


def _budget_dir(job: Job, budget: float) -> Path:
    """The directory of ``job``'s run decayed over ``budget`` alone, e.g.
    ``uniform+cosine-3x-seed0``."""
    return job.run_dir.with_name(f"{job.method}-{budget:g}x-seed{job.seed}")


def _by_compute(
    job: Job, cost: IterationCost, steps: dict[float, int], units: int, common: list[str]
) -> list[BudgetJob]:
    """The runs of a method whose iterations differ in cost: each stops at its compute budget
    (``train.budget``: one run to the largest, tested at the smaller ones, or one run per budget
    when its learning rate decays over it), capped at the meta-updates its cheapest iterations
    would allow."""
    decays = job.config.train.lr_schedule != "constant"
    groups = [[b] for b in steps] if decays else [list(steps)]
    planned = []
    for group in groups:
        total = max(group) * units
        values = job.config.to_dict()
        values["train"]["budget"] = {
            "total": total,
            "step": cost.step,
            "light": cost.light,
            "warmup": cost.warmup,
            "test_at": [b * units for b in sorted(group) if b * units < total],
        }
        values["train"]["iterations"] = math.floor(total / min(cost.step, cost.light)) + 1
        values["train"]["test_at"] = []
        run_dir = _budget_dir(job, group[0]) if decays else job.run_dir
        config = config_from_dict(values, common)
        planned.append(
            BudgetJob(replace(job, config=config, run_dir=run_dir), {b: steps[b] for b in group})
        )
    return planned
