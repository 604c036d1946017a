"""What an iteration of a training method costs, in uniform-iteration equivalents.

A method's wall time per iteration depends on the machine and on whatever else runs on it; its
ratio to a uniform-sampling iteration measured in the same process, the two alternating
iteration by iteration, does much less: load from other processes slows both alike, and the
ratio is a property of the computations (how many tasks are adapted, differentiated and
evaluated). So the cost of training is counted in uniform iterations: a run's cost after
``w`` scheduler warm-up iterations and ``s`` meta-update iterations is
``w * warmup + s * step`` (and ``light`` for each meta-update iteration that measured
nothing).

Example:
    >>> cost = IterationCost(warmup=4.9, step=6.2)
    >>> cost.of(warmup=200, steps=500)
    4080.0
    >>> cost.steps_within(5000, warmup=200)
    648
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from metasched.config import Config, config_from_dict
from metasched.schedulers import SCHEDULERS


@dataclass(frozen=True)
class IterationCost:
    """Uniform iterations per iteration of a method, by phase.

    Attributes:
        step: per iteration that updates the meta-model.
        warmup: per scheduler warm-up iteration (0 for a method without one).
        warmup_iterations: how many warm-up iterations the method runs first.
        light: per meta-update iteration in which the scheduler measured nothing (its record
            says ``measured: 0``; a scheduler that measures only some iterations, e.g.
            ``gated``): B uniform draws trained on, uniform sampling's computation.
        varies: whether the method's meta-update iterations came in both kinds (``step`` and
            ``light``) when it was measured: its runs then stop at their compute budget
            (``train.budget``) rather than at a number of meta-updates.
    """

    step: float
    warmup: float = 0.0
    warmup_iterations: int = 0
    light: float = 1.0
    varies: bool = False

    def of(self, warmup: int, steps: int) -> float:
        """The cost of ``warmup`` warm-up and ``steps`` meta-update iterations."""
        return warmup * self.warmup + steps * self.step

    def steps_within(self, budget: float, warmup: int | None = None) -> int:
        """The meta-updates that fit in ``budget`` uniform iterations after the warm-up."""
        warmup = self.warmup_iterations if warmup is None else warmup
        return math.floor((budget - warmup * self.warmup) / self.step + 1e-9)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_cost(records: list[dict[str, Any]], cost: IterationCost) -> np.ndarray:
    """The cumulative cost after each training record (``phase`` warmup or train, and
    ``measured`` 0 for a light iteration)."""
    return np.cumsum(np.array([charge(r, cost) for r in records], dtype=float))


class PhaseCosts(Protocol):
    """Per-iteration costs by phase: an :class:`IterationCost`, or a run's
    :class:`metasched.config.schema.ComputeBudget`."""

    @property
    def step(self) -> float: ...
    @property
    def light(self) -> float: ...
    @property
    def warmup(self) -> float: ...


def charge(record: dict[str, Any], cost: PhaseCosts) -> float:
    """What a training record's iteration cost: ``cost``'s ``step``, ``light`` or ``warmup``,
    by the iteration's phase."""
    per = {"warmup": cost.warmup, "train": cost.step, "light": cost.light}
    return float(per.get(_phase(record), cost.step))


def _phase(record: dict[str, Any]) -> str:
    """Which of :class:`IterationCost`'s phases a training record's iteration was."""
    return "light" if record.get("measured") == 0 else str(record.get("phase", "train"))


def calibrate(
    methods: dict[str, Config],
    uniform: Config,
    iterations: int = 20,
    rounds: int = 8,
    say: Any = print,
    threads: int | None = None,
) -> dict[str, IterationCost]:
    """Measures each method's cost per iteration against ``uniform`` in this process.

    Each method trains from its config (its warm start included) alternating iteration by
    iteration with uniform sampling, so that load from other processes, which changes over
    seconds, slows both alike. The iterations come in blocks of ``iterations`` pairs; a
    block's ratio is the method's time over uniform sampling's in it, and the cost is the
    median over ``rounds`` blocks (a load spike spoils one block, not the estimate). The first
    two iterations of each trainer are left out (allocator and cache warm-up). Phases are timed
    apart: a scheduler's warm-up iterations, its meta-update iterations (``step``), and the
    meta-update iterations in which a scheduler that measures only some of them measured
    nothing (``light``). A phase that never fills half a block is timed over all its
    iterations together; light iterations never seen count as one (uniform sampling's
    computation). A method whose configuration is uniform sampling's but for the learning-rate
    schedule costs exactly one.

    Args:
        methods: each method's config, as its runs will use it.
        uniform: the reference: uniform sampling on the same data and model.
        iterations: iteration pairs per block.
        rounds: timed blocks of meta-update iterations.
        say: where progress lines go.
        threads: torch threads to time with, those the runs will use (this process's setting
            when None): two threads on a machine whose other core is busy wait on each other
            and run many times slower.

    Returns:
        Each method's :class:`IterationCost`.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or previous)
    try:
        return _calibrate(methods, uniform, iterations, rounds, say)
    finally:
        torch.set_num_threads(previous)


def _calibrate(
    methods: dict[str, Config], uniform: Config, iterations: int, rounds: int, say: Any
) -> dict[str, IterationCost]:
    from metasched.training.trainer import Trainer

    costs = {}
    with tempfile.TemporaryDirectory() as work:
        for name, config in methods.items():
            if _same_computation(config, uniform):
                costs[name] = IterationCost(step=1.0)
                continue
            method = Trainer.create(_endless(config), Path(work) / name)
            reference = Trainer.create(_endless(uniform), Path(work) / f"{name}-uniform")
            for _ in range(2):
                _timed(method), _timed(reference)
            blocks: dict[str, list[float]] = {"warmup": [], "train": [], "light": []}
            # (method, reference) seconds of a phase too few in its block to time it there
            scattered: dict[str, list[tuple[float, float]]] = {phase: [] for phase in blocks}
            untimed = 0  # blocks split so that no phase fills half of one: bounded
            while len(blocks["train"]) + len(blocks["light"]) < rounds and untimed < rounds:
                block = [(*_timed(method), _timed(reference)[1]) for _ in range(iterations)]
                counted = False
                for phase in blocks:
                    mine = [(seconds, base) for p, seconds, base in block if p == phase]
                    if len(mine) >= iterations // 2:
                        blocks[phase].append(_ratio(mine))
                        counted = True
                    else:
                        scattered[phase] += mine
                untimed += not counted
            light = _median(blocks["light"], _ratio(scattered["light"]) or 1.0)
            step = _median(blocks["train"], _ratio(scattered["train"]) or light)
            # a warm-up of only the untimed first iterations: count it at the step's cost
            untimed_warmup = step * bool(method.warmup)
            warmup = _median(blocks["warmup"], _ratio(scattered["warmup"]) or untimed_warmup)
            # declared, not only seen: a gate that stayed on while timed still switches off
            light_seen = bool(blocks["light"] or scattered["light"])
            varies = light_seen or SCHEDULERS[config.scheduler.name].has_light_iterations
            costs[name] = IterationCost(step, warmup, method.warmup, light, varies)
            say(f"cost of {name}: {costs[name].step:.2f} uniform iterations per meta-update")
    return costs


def _median(values: list[float], otherwise: float) -> float:
    return float(np.median(values)) if values else otherwise


def _ratio(pairs: list[tuple[float, float]]) -> float:
    """Σ method seconds / Σ reference seconds of (method, reference) pairs; 0 for none."""
    return sum(s for s, _ in pairs) / sum(b for _, b in pairs) if pairs else 0.0


def _same_computation(config: Config, uniform: Config) -> bool:
    """Whether ``config`` runs uniform sampling's computation."""
    return computation(config) == computation(uniform)


def computation(config: Config) -> dict[str, Any]:
    """What an iteration of ``config`` computes, as flat ``section.key`` settings: all but the
    schedule of the learning rate, the run's length, its milestones and the seed, which leave
    an iteration's cost alone."""
    ignored = ["train.lr_schedule=constant", "train.test_at=[]", "seed=0"]
    values = config_from_dict(config.to_dict(), ignored).to_dict()
    for key in ("iterations", "val_every", "checkpoint_every", "budget"):
        values["train"].pop(key, None)
    return json.loads(json.dumps(_flat(values)))  # as costs.json gives it back


def computation_changes(measured: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The settings of :func:`computation` that differ between a measured cost's config and
    one about to use it, as ``key: then -> now``; settings one of them lacks (added to or
    dropped from the config since) are not compared.

    Example:
        >>> from metasched.config import load_config
        >>> then = computation(load_config("glyphs-noisy", ["scheduler.pool_size=4"]))
        >>> computation_changes(then, computation(load_config("glyphs-noisy")))
        ['scheduler.pool_size: 4 -> 10']
        >>> computation_changes(then, then | {"model.new_option": 1})
        []
    """
    return [
        f"{key}: {measured[key]} -> {now[key]}"
        for key in sorted(measured.keys() & now.keys())
        if measured[key] != now[key]
    ]


def _flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _endless(config: Config) -> Config:
    """``config`` with room for any number of calibration iterations."""
    return config_from_dict(config.to_dict(), ["train.iterations=1000000", "train.test_at=[]"])


def _timed(trainer: Any) -> tuple[str, float]:
    """Runs one training iteration (no validation or checkpoint); returns its phase and wall
    time."""
    start = time.perf_counter()
    record = trainer.train_step()
    seconds = time.perf_counter() - start
    trainer.state.iteration += 1
    return _phase(record), seconds
