"""What a run configuration holds: typed, frozen sections, checked when built."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from metasched.data.registry import DataSpec
from metasched.schedulers import SCHEDULERS
from metasched.tasks.assay_sampler import MIN_SCALE

REWARD_SPLITS = ("val-reward", "val", "train-16")
LR_SCHEDULES = ("constant", "cosine", "linear")


@dataclass(frozen=True)
class AssayTaskConfig:
    """Regression episodes from assays (molecular data sets): one assay is one task.

    ``support`` compounds form the support set and up to ``query_cap`` of the assay's other
    compounds the query; assays with fewer than ``support + min_query`` are left out.
    ``support_choices`` (training tasks only): draw each episode's support size from these,
    among those its assay allows, so one model serves several sizes.
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
    support_choices: list[int] | None = None
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
class ComputeBudget:
    """A stop at a compute budget instead of a meta-update count (``train.budget``).

    The run ends once it has spent ``total`` uniform-sampling iterations of compute (or at
    ``train.iterations`` meta-updates, if that comes first), each iteration charged by its
    phase: ``step`` for a meta-update iteration that measured its candidates, ``light`` for
    one that measured nothing (its record says ``measured: 0``), ``warmup`` for a scheduler
    warm-up iteration (:mod:`metasched.training.cost`). A decaying learning rate decays over
    the budget. ``test_at``: costs at which the current and best-so-far models are also
    tested. ``metasched compare --budget`` writes this for a scheduler whose iterations differ
    in cost.
    """

    total: float
    step: float = 1.0
    light: float = 1.0
    warmup: float = 0.0
    test_at: list[float] = field(default_factory=list)


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
    value of one run at several budgets. ``budget``: stop at a compute budget
    (:class:`ComputeBudget`) rather than at ``iterations``.
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
    budget: ComputeBudget | None = None


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
        from metasched.config.checks import check_config  # the checks read every section

        check_config(self)

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["scheduler"] = self.scheduler.to_dict()
        return values
