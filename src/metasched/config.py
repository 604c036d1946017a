"""Typed run configurations: YAML presets plus ``key=value`` overrides, checked on load."""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import reprlib
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Union

import yaml

from metasched.data.registry import DATASETS, DataSpec
from metasched.domains import domain_of_data
from metasched.errors import MetaschedError
from metasched.learners import LEARNERS
from metasched.schedulers import SCHEDULERS
from metasched.tasks.assay_sampler import MIN_SCALE
from metasched.tasks.noise import NOISE_MODES

REWARD_SPLITS = ("val-reward", "val", "train-16")
MAX_CONFIG_BYTES = 1_000_000
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
LR_SCHEDULES = ("constant", "cosine", "linear")


@dataclass(frozen=True)
class AssayTaskConfig:
    """Regression episodes from assays (molecular data sets): one assay is one task.

    ``support`` compounds form the support set and up to ``query_cap`` of the assay's other
    compounds the query; assays with fewer than ``support + min_query`` are left out.
    ``source_split: flags`` takes the support from the source's own training rows and the
    query from its test rows (pQSAR's TRN/TST) instead of random draws. ``standardise``
    shifts and scales targets by the support's mean and standard deviation, floored at
    ``min_scale`` in the targets' units (metrics are reported on the original scale). A
    fraction ``task.noise_ratio`` of the training tasks get N(0, ``noise_std``²) noise on
    their support targets. ``train_assays`` limits the training assays (a count, or a list of
    assay ids) and ``assay_types`` keeps only assays of those types (FS-Mol: B binding, F
    functional, A ADME, ...).
    """

    support: int = 16
    query_cap: int = 256
    min_query: int = 16
    source_split: str = "random"
    standardise: bool = False
    min_scale: float = MIN_SCALE
    noise_std: float = 0.0
    train_assays: int | list[str] | None = None
    assay_types: list[str] | None = None


@dataclass(frozen=True)
class TaskConfig:
    """Episodes: N-way K-shot with Q query images per class; training-task label noise.

    ``noise``: how a noisy task's support is corrupted (:mod:`metasched.tasks.noise`):
    ``redraw`` (the reference's construction: a balanced support of random labels), ``flip``
    (per-example flips of a balanced support, which unbalances its labels) or ``permute``
    (labels swapped consistently between classes). ``train_classes``: a limited budget of
    training classes: a count (seeded), a list of indices or names (e.g. miniImageNet wnids),
    or the path of a file of names. ``reward_split``: where schedulers' clean
    reward tasks come from: ``val-reward`` (half of the meta-validation classes, disjoint from
    the half that selects checkpoints), ``val`` (all of meta-validation, shared with checkpoint
    selection) or ``train-16`` (training classes 0..15, as the reference code).
    ``skew_fraction`` of the training tasks draw their classes from a fixed subset of
    ``skew_classes`` classes (a skewed task distribution: those tasks recur).
    ``noisy_sources``: noise with a cause, a fixed share of the training classes (or assays) is
    corrupted in every episode that draws it: a corrupted class's support shows the images of
    a fixed partner class, a corrupted assay's values are shuffled among its compounds
    (:class:`metasched.tasks.noise.SourceNoise`). ``assays`` configures regression episodes on
    molecular data sets (:class:`AssayTaskConfig`); ``noise_ratio``, ``noisy_sources`` and
    ``reward_split`` serve both domains.
    """

    n_way: int = 5
    k_shot: int = 1
    q_query: int = 15
    noise: str = "redraw"
    noise_ratio: float = 0.0
    flip_rate: float = 0.8
    train_classes: int | list[int] | list[str] | str | None = None
    reward_split: str = "val-reward"
    skew_fraction: float = 0.0
    skew_classes: int = 10
    noisy_sources: float = 0.0
    assays: AssayTaskConfig = field(default_factory=AssayTaskConfig)


@dataclass(frozen=True)
class ModelConfig:
    """The network: ``name`` picks one that fits the data's domain (images: ``conv4`` or
    ``resnet12``, whose widths are ``filters`` x (1, 2.5, 5, 10); fingerprints: ``mlp``; see
    :mod:`metasched.domains`), the other keys size it."""

    name: str = "conv4"
    filters: int = 64
    hidden: int = 500
    batch_norm: bool = False


@dataclass(frozen=True)
class LearnerConfig:
    """The meta-learner and its inner loop for training and evaluation.

    ``algorithm``: ``maml``, ``anil``, ``ridge`` (ANIL with a closed-form ridge head of
    penalty ``ridge_penalty``, regression only; it takes no inner steps) or ``gp`` (an exact
    Gaussian process on the backbone's features with the head as prior mean, ``kernel`` rbf,
    linear or tanimoto; ``inner_steps`` gradient steps of ``inner_lr`` fit its
    hyperparameters to each task's support, 0 shares them across tasks; regression only).

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
    ridge_penalty: float = 1.0
    kernel: str = "rbf"


@dataclass(frozen=True)
class SchedulerConfig:
    """How training tasks are chosen among ``pool_size`` candidates (default: the meta-batch).

    ``name`` picks a scheduler of :data:`metasched.schedulers.SCHEDULERS`; its settings are
    the section of that name (``scheduler.ats.temperature``, ...), typed by the scheduler's
    ``Options``. A config may carry the sections of several schedulers (e.g. a preset that
    ``metasched compare`` runs with each); only the named one is used.

    The other keys say how the pool is measured, for every scheduler that asks for gradient
    statistics: ``gradient_layers: last`` compares gradients of the last backbone layer and the
    head only (a shallower backward pass); ``pool_precision: bf16`` measures the pool under
    bfloat16 autocast (the chosen tasks are then recomputed in fp32 for the updates);
    ``reuse_graphs`` keeps the candidates' graphs so the chosen ones are not recomputed, as
    long as the pool's graphs fit in ``graph_memory_gb`` (judged by the first candidate's;
    ``null``: no limit); the chosen tasks are otherwise recomputed, with the same results up to
    float round-off.
    """

    name: str = "uniform"
    pool_size: int | None = None
    gradient_layers: str = "all"
    pool_precision: str = "fp32"
    reuse_graphs: bool = True
    graph_memory_gb: float | None = 0.5
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def settings(self) -> Any:
        """The named scheduler's options (its defaults when the config gives none)."""
        return self.options.get(self.name) or SCHEDULERS[self.name].Options()

    def to_dict(self) -> dict[str, Any]:
        """The YAML form: the common keys, then one section per scheduler given."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        del values["options"]
        sections = dict(self.options)
        if self.name in SCHEDULERS:
            sections.setdefault(self.name, self.settings)
        values.update({name: dataclasses.asdict(o) for name, o in sections.items()})
        return values


@dataclass(frozen=True)
class TrainConfig:
    """The outer loop, validation, checkpoints and the final test.

    ``reward_tasks_per_update`` adds clean tasks of the reward split to each meta-update, on
    average that many (a control that gives uniform sampling the data a reward-driven
    scheduler consumes). ``clip_grad_norm`` rescales a meta-gradient whose global norm exceeds
    it (off when null), so that one diverging inner loop cannot wreck θ0 in a single step.
    ``keep_checkpoints`` keeps that many of the newest ``last.pt`` (older ones as ``last.pt.1``,
    ...); resuming takes the newest intact one. ``on_nonfinite`` says what a NaN or infinite
    loss or gradient does: ``stop`` the run naming the cause, or ``skip`` the tasks that gave it
    (the run still stops when every task of 20 iterations in a row was skipped).
    ``lr_schedule``: ``constant`` keeps ``meta_lr``; ``cosine`` and ``linear`` decay it to zero
    over the ``iterations`` meta-updates (a baseline tuned as a careful user would: a decayed
    rate is what a fixed compute budget calls for). ``test_at``: meta-update counts at which the
    current and the best-so-far meta-models are also tested (on the final test's tasks): the
    value of one run at several budgets.
    """

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
    reward_tasks_per_update: float = 0.0
    clip_grad_norm: float | None = None
    keep_checkpoints: int = 2
    on_nonfinite: str = "stop"
    lr_schedule: str = "constant"
    test_at: list[int] = field(default_factory=list)


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
        values = dataclasses.asdict(self)
        values["scheduler"] = self.scheduler.to_dict()
        return values


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
        task.reward_split in REWARD_SPLITS,
        f"task.reward_split={task.reward_split!r}; use one of {', '.join(REWARD_SPLITS)}",
    )
    _require(config.model.filters >= 1, "model.filters must be positive")
    _require(
        learner.algorithm in LEARNERS,
        f"unknown learner.algorithm={learner.algorithm!r}; use {_either(list(LEARNERS))}"
        " (first order: learner.first_order=true)",
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
        train.lr_schedule in LR_SCHEDULES,
        f"train.lr_schedule={train.lr_schedule!r}; use one of {', '.join(LR_SCHEDULES)}",
    )
    _require(
        all(1 <= u <= train.iterations for u in train.test_at),
        f"train.test_at={train.test_at} must list meta-update counts from 1 to train.iterations"
        f"={train.iterations}",
    )
    _require(train.reward_tasks_per_update >= 0, "train.reward_tasks_per_update must be >= 0")
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


# ----------------------------------------------------------------------------------------------
# Building dataclasses from plain dictionaries, with type checks.


_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


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
        raise MetaschedError(f"{key}={_shown(value)} is not a valid {_type_name(kind)}")
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
        number = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value.strip()):
            number = float(value)  # YAML 1.1 reads 1e-4 (no dot) as a string
        if number is not None:
            if not math.isfinite(number):
                raise MetaschedError(f"{key}={_shown(value)} is not a finite number; give one")
            return number
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind in (bool, str) and isinstance(value, kind):
        return value
    raise MetaschedError(f"{key}={_shown(value)} is not a valid {_type_name(kind)}")


def _shown(value: Any) -> str:
    """A value as an error message shows it: its repr, cut short (a YAML file of nested
    aliases expands to an exponentially long one)."""
    shown = reprlib.Repr()
    shown.maxlevel, shown.maxstring, shown.maxother = 3, 60, 60
    return shown.repr(value)


def build(cls: Any, values: dict[str, Any], prefix: str = "") -> Any:
    """Builds dataclass ``cls`` from a nested dictionary, rejecting unknown keys."""
    if not isinstance(values, dict):
        raise MetaschedError(f"{prefix.rstrip('.') or 'the config'} must be a mapping of settings")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    if cls is SchedulerConfig:
        names.remove("options")
        sections = {k: v for k, v in values.items() if k in SCHEDULERS}
        values = {k: v for k, v in values.items() if k not in SCHEDULERS}
        kwargs["options"] = {
            name: build(SCHEDULERS[name].Options, section or {}, f"{prefix}{name}.")
            for name, section in sections.items()
        }
        names = [*names, *SCHEDULERS]
    for key, value in values.items():
        full = f"{prefix}{key}"
        if key not in names:
            owners = [
                n
                for n, c in SCHEDULERS.items()
                if key in {f.name for f in dataclasses.fields(c.Options)}
            ]
            if cls is SchedulerConfig and owners:
                raise MetaschedError(
                    f"{full!r} is a setting of the {', '.join(owners)} scheduler; write it in its"
                    f" section, e.g. {prefix}{owners[0]}.{key}"
                )
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
    """The presets shipped in ``metasched/configs``; those of its ``paper/`` folder (the
    paper's settings) are named ``paper/<name>``."""
    folder = resources.files("metasched") / "configs"
    names = [p.name for p in folder.iterdir() if p.name.endswith(".yaml")]
    paper = folder / "paper"
    if paper.is_dir():
        names += [f"paper/{p.name}" for p in paper.iterdir() if p.name.endswith(".yaml")]
    return sorted(name.removesuffix(".yaml") for name in names)


def read_config_file(name_or_path: str, _chain: tuple[str, ...] = ()) -> dict[str, Any]:
    """The dictionary in a preset (by name) or a YAML file (by path).

    ``extends: PRESET`` (or a list of them) starts from those presets or files (a relative
    path is looked up beside the extending file first), merged in order, and sets this
    file's values over them, section by section.
    """
    path = Path(name_or_path).expanduser()
    if path.is_file():
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as error:
            raise MetaschedError(
                f"{name_or_path!r} cannot be read as a YAML text file ({type(error).__name__});"
                " give a config file"
            ) from error
    elif name_or_path in preset_names():
        text = (resources.files("metasched") / "configs" / f"{name_or_path}.yaml").read_text()
    else:
        raise MetaschedError(
            f"no preset or file named {name_or_path!r}; use one of {', '.join(preset_names())}"
            " or a path to a YAML file"
        )
    if len(text) > MAX_CONFIG_BYTES:
        raise MetaschedError(
            f"{name_or_path!r} is {len(text):,} characters long, over the {MAX_CONFIG_BYTES:,} a"
            " config may have; give a config file"
        )
    try:
        values = yaml.safe_load(text) or {}
    except RecursionError as error:
        raise MetaschedError(f"{name_or_path!r} nests too deeply to be a config") from error
    except yaml.YAMLError as error:
        reason = str(error).replace("\n", " ")
        raise MetaschedError(f"{name_or_path!r} is not valid YAML: {reason}") from error
    if not isinstance(values, dict):
        raise MetaschedError(f"{name_or_path!r} must hold a mapping of config sections")
    parents = values.pop("extends", [])
    parents = [parents] if isinstance(parents, str) else parents
    if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
        raise MetaschedError(f"{name_or_path!r}: extends must name a preset or file, or a list")
    if name_or_path in _chain:
        raise MetaschedError(f"{name_or_path!r} extends itself through {' -> '.join(_chain)}")
    merged: dict[str, Any] = {}
    for parent in parents:
        beside = path.parent / parent  # a file's parents are found beside it first
        if path.is_file() and parent not in preset_names() and beside.is_file():
            parent = str(beside)
        merged = _merged(merged, read_config_file(parent, (*_chain, name_or_path)))
    return _merged(merged, values)


def _merged(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` set over it; sections merge, other values replace."""
    result = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merged(result[key], value)
        else:
            result[key] = value
    return result


def load_config(name_or_path: str, overrides: list[str] | None = None) -> Config:
    """A checked :class:`Config` from a preset or YAML file plus overrides."""
    values = apply_overrides(read_config_file(name_or_path), overrides or [])
    config: Config = build(Config, values)
    return config


def config_from_dict(values: dict[str, Any], overrides: list[str] | None = None) -> Config:
    """A checked :class:`Config` from a dictionary (as saved in a run) plus overrides."""
    config: Config = build(Config, apply_overrides(values, overrides or []))
    return config
