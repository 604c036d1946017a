"""Typed run configurations: YAML presets plus ``key=value`` overrides, checked on load."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Union

import yaml

from metasched.data.registry import DATASETS, DataSpec
from metasched.errors import MetaschedError

SCHEDULERS = ("uniform", "ats", "oracle")


@dataclass(frozen=True)
class TaskConfig:
    """Episodes: N-way K-shot with Q query images per class; training-task label noise."""

    n_way: int = 5
    k_shot: int = 1
    q_query: int = 15
    noise_ratio: float = 0.0
    flip_rate: float = 0.8
    train_classes: int | list[int] | None = None


@dataclass(frozen=True)
class ModelConfig:
    """The network: ``conv4`` (images) or ``mlp`` (fingerprints)."""

    name: str = "conv4"
    filters: int = 64
    hidden: int = 500
    batch_norm: bool = False


@dataclass(frozen=True)
class LearnerConfig:
    """The meta-learner (``maml`` or ``anil``) and its inner loop for training and evaluation.

    ``batching``: ``loop`` (one task after another), ``grouped`` (same-shaped tasks in one
    pass with per-task weights) or ``auto`` (grouped on CUDA, loop on CPU: measured fastest,
    see docs/benchmarks.md).
    """

    algorithm: str = "anil"
    first_order: bool = False
    inner_lr: float = 0.01
    inner_steps: int = 5
    eval_inner_lr: float | None = None
    eval_inner_steps: int = 10
    batching: str = "auto"


@dataclass(frozen=True)
class SchedulerConfig:
    """How training tasks are chosen among ``pool_size`` candidates (default: the meta-batch).

    ``uniform`` and ``oracle`` (reads the noise flags, trains on clean tasks only) ignore the
    ATS settings below. ``faithful`` reproduces the reference code's scheduler, reward tasks
    (training classes 0..15), reward (score of the look-ahead model, no pairing), baseline and
    warm-up; ``reward`` is ``score`` (accuracy, or -MSE) or ``loss`` (minus the query loss);
    ``paired_baseline`` subtracts the current model's value on the same reward tasks.
    ``features: lite`` compares gradients of the last backbone layer and the head only (a
    shallower backward pass over the pool); ``pool_precision: bf16`` scores the pool under
    bfloat16 autocast (then the chosen tasks are recomputed in fp32 for the updates).
    """

    name: str = "uniform"
    pool_size: int | None = None
    faithful: bool = False
    temperature: float = 0.1
    temperature_decay: float = 0.99
    replace: bool = False
    warmup: int = 0
    lr: float = 0.001
    baseline_momentum: float = 0.9
    lookahead_lr: float = 1.0
    reward: str = "loss"
    paired_baseline: bool = True
    reuse_graphs: bool = True
    features: str = "full"
    pool_precision: str = "fp32"


@dataclass(frozen=True)
class TrainConfig:
    """The outer loop, validation, checkpoints and the final test."""

    iterations: int = 1000
    meta_batch_size: int = 4
    meta_lr: float = 0.001
    val_every: int = 100
    val_tasks: int = 200
    test_tasks: int = 600
    checkpoint_every: int = 100
    device: str = "auto"
    init_from: str | None = None
    retain_memory: bool = True  # CPU: reuse freed memory instead of page-faulting (allocator.py)


@dataclass(frozen=True)
class Config:
    """Everything that defines a run."""

    seed: int = 0
    data: DataSpec = field(default_factory=DataSpec)
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        check_config(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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
    _require(task.n_way >= 2, f"task.n_way must be at least 2, got {task.n_way}")
    _require(task.k_shot >= 1, f"task.k_shot must be at least 1, got {task.k_shot}")
    _require(task.q_query >= 1, f"task.q_query must be at least 1, got {task.q_query}")
    for key in ("noise_ratio", "flip_rate"):
        value = getattr(task, key)
        _require(0.0 <= value <= 1.0, f"task.{key} must lie in [0, 1], got {value}")
    _require(
        config.model.name in ("conv4", "mlp"),
        f"unknown model.name={config.model.name!r}; use conv4 or mlp",
    )
    _require(config.model.filters >= 1, "model.filters must be positive")
    _require(
        learner.algorithm in ("maml", "anil"),
        f"unknown learner.algorithm="
        f"{learner.algorithm!r}; use maml or anil (first order: learner.first_order=true)",
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
    ):
        _require(getattr(train, key) >= 1, f"train.{key} must be at least 1")
    _require(
        train.device == "auto" or train.device.split(":")[0] in ("cpu", "cuda", "mps"),
        f"train.device={train.device!r} is not a device; use auto, cpu or cuda",
    )
    scheduler = config.scheduler
    _require(
        scheduler.name in SCHEDULERS,
        f"unknown scheduler.name={scheduler.name!r}; use one of {', '.join(SCHEDULERS)}",
    )
    for key in ("temperature", "lr", "lookahead_lr"):
        value = getattr(scheduler, key)
        _require(value > 0, f"scheduler.{key} must be positive, got {value}")
    _require(0 < scheduler.temperature_decay <= 1, "scheduler.temperature_decay must be in (0, 1]")
    _require(0 <= scheduler.baseline_momentum < 1, "scheduler.baseline_momentum must be in [0, 1)")
    _require(scheduler.warmup >= 0, "scheduler.warmup must be >= 0")
    _require(
        scheduler.reward in ("score", "loss"),
        f"scheduler.reward={scheduler.reward!r}; use score (accuracy, or -MSE) or loss",
    )
    _require(
        scheduler.features in ("full", "lite"),
        f"scheduler.features={scheduler.features!r}; use full or lite",
    )
    _require(
        scheduler.pool_precision in ("fp32", "bf16"),
        f"scheduler.pool_precision={scheduler.pool_precision!r}; use fp32 or bf16",
    )
    pool = scheduler.pool_size
    _require(
        scheduler.name != "ats" or (pool or 0) > train.meta_batch_size,
        f"scheduler.name=ats chooses among more candidates than it trains on; set"
        f" scheduler.pool_size above train.meta_batch_size={train.meta_batch_size} (the paper: 10)",
    )
    _require(
        pool is None or pool >= train.meta_batch_size,
        f"scheduler.pool_size={pool} is"
        f" smaller than train.meta_batch_size={train.meta_batch_size}; raise it",
    )


# ----------------------------------------------------------------------------------------------
# Building dataclasses from plain dictionaries, with type checks.


def _type_name(kind: Any) -> str:
    return getattr(kind, "__name__", None) or str(kind).replace("typing.", "")


def _coerce(value: Any, kind: Any, key: str) -> Any:
    """Checks ``value`` against a field type, converting int to float where a float is due."""
    origin = typing.get_origin(kind)
    if origin in (Union, types.UnionType):
        for option in typing.get_args(kind):
            try:
                return _coerce(value, option, key)
            except MetaschedError:
                continue
        raise MetaschedError(f"{key}={value!r} is not a valid {_type_name(kind)}")
    if kind is type(None):
        if value is None:
            return None
    elif origin is list:
        (item,) = typing.get_args(kind)
        if isinstance(value, list):
            return [_coerce(v, item, key) for v in value]
    elif dataclasses.is_dataclass(kind):
        if isinstance(value, dict):
            return build(kind, value, key + ".")
    elif kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind in (bool, str) and isinstance(value, kind):
        return value
    raise MetaschedError(f"{key}={value!r} is not a valid {_type_name(kind)}")


def build(cls: Any, values: dict[str, Any], prefix: str = "") -> Any:
    """Builds dataclass ``cls`` from a nested dictionary, rejecting unknown keys."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        full = f"{prefix}{key}"
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = (
                f"; did you mean {prefix}{close[0]}?" if close else f"; known: {', '.join(names)}"
            )
            raise MetaschedError(f"unknown config key {full!r}{hint}")
        kwargs[key] = _coerce(value, hints[key], full)
    return cls(**kwargs)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.iterations=200"`` to (["train", "iterations"], 200); values are YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise MetaschedError(f"override {text!r} is not key=value; write e.g. train.iterations=200")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as error:
        raise MetaschedError(f"override {text!r}: the value is not valid YAML") from error
    return key.strip().split("."), value


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Sets each ``a.b=c`` in a nested dictionary (a copy)."""
    result = yaml.safe_load(yaml.safe_dump(values))
    for text in overrides:
        path, value = parse_override(text)
        node = result
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise MetaschedError(f"override {text!r}: {part!r} is not a section")
            node = child
        node[path[-1]] = value
    return result


# ----------------------------------------------------------------------------------------------
# Presets and files.


def preset_names() -> list[str]:
    """The presets shipped in ``metasched/configs``."""
    folder = resources.files("metasched") / "configs"
    return sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )


def read_config_file(name_or_path: str) -> dict[str, Any]:
    """The dictionary in a preset (by name) or a YAML file (by path)."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        text = path.read_text()
    elif name_or_path in preset_names():
        text = (resources.files("metasched") / "configs" / f"{name_or_path}.yaml").read_text()
    else:
        raise MetaschedError(
            f"no preset or file named {name_or_path!r}; use one of {', '.join(preset_names())}"
            " or a path to a YAML file"
        )
    try:
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        reason = str(error).replace("\n", " ")
        raise MetaschedError(f"{name_or_path!r} is not valid YAML: {reason}") from error
    if not isinstance(values, dict):
        raise MetaschedError(f"{name_or_path!r} must hold a mapping of config sections")
    return values


def load_config(name_or_path: str, overrides: list[str] | None = None) -> Config:
    """A checked :class:`Config` from a preset or YAML file plus overrides."""
    values = apply_overrides(read_config_file(name_or_path), overrides or [])
    config: Config = build(Config, values)
    return config


def config_from_dict(values: dict[str, Any], overrides: list[str] | None = None) -> Config:
    """A checked :class:`Config` from a dictionary (as saved in a run) plus overrides."""
    config: Config = build(Config, apply_overrides(values, overrides or []))
    return config
