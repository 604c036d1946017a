"""Checks of a whole configuration: values that cannot work, each rejected in one line that
names the key and a fix (the domain's own checks included)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from metasched.config import schema
from metasched.data.registry import DATASETS
from metasched.domains import domain_of_data
from metasched.errors import MetaschedError
from metasched.learners import LEARNERS
from metasched.schedulers import SCHEDULERS
from metasched.tasks.noise import NOISE_MODES

if TYPE_CHECKING:
    from metasched.config.schema import Config

#: Sane ceilings of settings whose huge values would hang or exhaust a machine before any
#: other check could (a keep_checkpoints of 10^12 rotates forever).
CEILINGS = {
    "train.keep_checkpoints": 1000,
    "train.meta_batch_size": 100_000,
    "train.val_tasks": 1_000_000,
    "train.test_tasks": 1_000_000,
    "data.image_size": 2048,
    "model.filters": 16_384,
    "model.hidden": 1_000_000,
    "task.n_way": 10_000,
    "task.k_shot": 100_000,
    "task.q_query": 100_000,
    "scheduler.pool_size": 100_000,
}


_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def _either(names: list[str]) -> str:
    """``"a, b or c"``."""
    return f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else names[0]


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise MetaschedError(message)


def check_config(config: Config) -> None:
    """Rejects values that cannot work, naming the key and a fix."""
    _require(
        config.data.name in DATASETS,
        f"unknown data set data.name={config.data.name!r}; choose one of {', '.join(DATASETS)}",
    )
    _require(config.data.image_size >= 1, "data.image_size must be positive")
    _require(config.data.channels in (1, 3), "data.channels must be 1 (grey) or 3 (RGB)")
    task, learner, train = config.task, config.learner, config.train
    _require(
        0 <= config.seed < 2**63,
        f"seed={config.seed} is out of range; use a whole number from 0 to 2**63 - 1",
    )
    _require(task.n_way >= 2, f"task.n_way must be at least 2, got {task.n_way}")
    _require(task.k_shot >= 1, f"task.k_shot must be at least 1, got {task.k_shot}")
    _require(task.q_query >= 1, f"task.q_query must be at least 1, got {task.q_query}")
    for key in ("noise_ratio", "flip_rate", "skew_fraction", "noisy_sources"):
        value = getattr(task, key)
        _require(0.0 <= value <= 1.0, f"task.{key} must lie in [0, 1], got {value}")
    _require(
        task.noise in NOISE_MODES,
        f"task.noise={task.noise!r}; use one of {', '.join(NOISE_MODES)}",
    )
    _require(
        task.reward_split in schema.REWARD_SPLITS,
        f"task.reward_split={task.reward_split!r}; use one of {', '.join(schema.REWARD_SPLITS)}",
    )
    _require(config.model.filters >= 1, "model.filters must be positive")
    _require(
        learner.algorithm in LEARNERS,
        f"unknown learner.algorithm={learner.algorithm!r}; use {_either(list(LEARNERS))}"
        " (first order: learner.first_order=true)",
    )
    _require(
        not learner.first_order or LEARNERS[learner.algorithm].has_first_order,
        f"learner.first_order=true: learner.algorithm={learner.algorithm} has no first-order"
        " mode; set learner.first_order=false",
    )
    domain_of_data(config.data.name).check(config)
    _require(
        learner.ridge_penalty > 0,
        f"learner.ridge_penalty must be positive, got {learner.ridge_penalty}; try 1.0",
    )
    for key in ("inner_lr", "eval_inner_lr"):
        value = getattr(learner, key)
        _require(
            value is None or value > 0, f"learner.{key} must be positive, got {value}; try 0.01"
        )
    _require(
        learner.batching in ("auto", "loop", "grouped"),
        f"learner.batching={learner.batching!r}; use auto, loop or grouped",
    )
    for key in ("inner_steps", "eval_inner_steps"):
        _require(getattr(learner, key) >= 0, f"learner.{key} must be >= 0")
    _require(train.meta_lr > 0, f"train.meta_lr must be positive, got {train.meta_lr}; try 0.001")
    for key in (
        "iterations",
        "meta_batch_size",
        "val_every",
        "val_tasks",
        "test_tasks",
        "checkpoint_every",
        "keep_checkpoints",
    ):
        _require(getattr(train, key) >= 1, f"train.{key} must be at least 1")
    for key, ceiling in CEILINGS.items():
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        _require(
            value is None or value <= ceiling,
            f"{key}={value} is beyond metasched's limit of {ceiling:,}; give a smaller value",
        )
    _require(
        _DEVICE.fullmatch(train.device) is not None,
        f"train.device={train.device!r} is not a device; use auto, cpu, cuda or cuda:N",
    )
    _require(
        train.on_nonfinite in ("stop", "skip"),
        f"train.on_nonfinite={train.on_nonfinite!r}; use stop or skip",
    )
    _require(
        train.lr_schedule in schema.LR_SCHEDULES,
        f"train.lr_schedule={train.lr_schedule!r}; use one of {', '.join(schema.LR_SCHEDULES)}",
    )
    _require(
        all(1 <= u <= train.iterations for u in train.test_at),
        f"train.test_at={train.test_at} must list meta-update counts from 1 to train.iterations"
        f"={train.iterations}",
    )
    _require(train.reward_tasks_per_update >= 0, "train.reward_tasks_per_update must be >= 0")
    budget = train.budget
    if budget is not None:
        _require(
            budget.total > 0 and budget.step > 0 and budget.light > 0 and budget.warmup >= 0,
            "train.budget needs a positive total and per-iteration costs (warmup may be 0)",
        )
        _require(
            all(0 < b < budget.total for b in budget.test_at),
            f"train.budget.test_at={budget.test_at} must list costs between 0 and"
            f" train.budget.total={budget.total:g}",
        )
    _require(
        train.clip_grad_norm is None or train.clip_grad_norm > 0,
        f"train.clip_grad_norm must be positive or null, got {train.clip_grad_norm}; try 10",
    )
    scheduler = config.scheduler
    _require(
        scheduler.name in SCHEDULERS,
        f"unknown scheduler.name={scheduler.name!r}; use one of {', '.join(SCHEDULERS)}",
    )
    _require(
        scheduler.gradient_layers in ("all", "last"),
        f"scheduler.gradient_layers={scheduler.gradient_layers!r}; use all or last",
    )
    _require(
        scheduler.pool_precision in ("fp32", "bf16"),
        f"scheduler.pool_precision={scheduler.pool_precision!r}; use fp32 or bf16",
    )
    _require(
        scheduler.graph_memory_gb is None or scheduler.graph_memory_gb > 0,
        f"scheduler.graph_memory_gb={scheduler.graph_memory_gb}; give a positive size or null",
    )
    pool = scheduler.pool_size
    _require(
        not SCHEDULERS[scheduler.name].needs_larger_pool or (pool or 0) > train.meta_batch_size,
        f"scheduler.name={scheduler.name} chooses among more candidates than it trains on; set"
        f" scheduler.pool_size above train.meta_batch_size={train.meta_batch_size} (the paper: 10)",
    )
    _require(
        pool is None or pool >= train.meta_batch_size,
        f"scheduler.pool_size={pool} is"
        f" smaller than train.meta_batch_size={train.meta_batch_size}; raise it",
    )
