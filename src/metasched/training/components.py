"""Turning a config into the objects of a run: data, task samplers, model, learner."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from metasched.config import Config
from metasched.data.registry import load_dataset
from metasched.domains import domain_of
from metasched.errors import MetaschedError
from metasched.learners import LEARNERS, Adaptation, MetaLearner
from metasched.schedulers import SCHEDULERS, SchedulerSetup, TaskScheduler
from metasched.tasks import TaskSource

# Independent random streams of a run: training draws never shift validation or test tasks.
STREAMS = {"train": 0, "val": 1, "test": 2}


@dataclass
class Components:
    """What a run is made of."""

    samplers: dict[str, TaskSource]
    model: nn.Module
    learner: MetaLearner
    scheduler: TaskScheduler
    device: torch.device
    inputs: dict[str, Any] = field(default_factory=dict)  # the domain's input profile


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MetaschedError(f"train.device={name!r} but CUDA is not available; use auto or cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise MetaschedError(
            f"train.device={name!r}: this machine has {torch.cuda.device_count()} CUDA devices;"
            " use cuda:0 or auto"
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise MetaschedError(f"train.device={name!r} but MPS is not available; use auto or cpu")
    return device


def build_learner(config: Config, model: nn.Module, device: torch.device) -> MetaLearner:
    """The learner ``learner.algorithm`` names, with the configured inner loops."""
    spec = config.learner
    batching = spec.batching
    if batching == "auto":
        batching = "grouped" if device.type == "cuda" else "loop"
    train = Adaptation(spec.inner_lr, spec.inner_steps)
    evaluation = Adaptation(spec.eval_inner_lr or spec.inner_lr, spec.eval_inner_steps)
    scored = config.scheduler.gradient_layers
    objective = domain_of(config).objective
    kind = LEARNERS[spec.algorithm]
    options = {name: getattr(spec, key) for name, key in kind.settings.items()}
    return kind(model, objective, train, evaluation, spec.first_order, scored, batching, **options)


def build_scheduler(config: Config, setup: SchedulerSetup) -> TaskScheduler:
    """The task scheduler named by ``scheduler.name``, with its own settings section."""
    return SCHEDULERS[config.scheduler.name](config.scheduler.settings, setup)


def build_components(config: Config) -> Components:
    """Data, samplers, model (seeded with ``config.seed``), learner and scheduler."""
    device = resolve_device(config.train.device)
    domain = domain_of(config)
    splits = load_dataset(config.data)
    samplers = domain.samplers(config, splits)
    torch.manual_seed(config.seed)
    model = domain.model(config).to(device)
    learner = build_learner(config, model, device)
    setup = SchedulerSetup(
        num_layers=len(learner.scored_layers()),
        num_classes=domain.num_units(splits),
        n_way=config.task.n_way,
        batch_size=config.train.meta_batch_size,
        iterations=config.train.iterations,
        seed=config.seed,
    )
    scheduler = build_scheduler(config, setup)
    return Components(samplers, model, learner, scheduler, device, domain.input_profile(splits))
