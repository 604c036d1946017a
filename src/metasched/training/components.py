"""Turning a config into the objects of a run: data, task samplers, model, learner."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from metasched.config import Config
from metasched.data.registry import load_dataset
from metasched.errors import MetaschedError
from metasched.learners import ANIL, MAML, Adaptation, MetaLearner
from metasched.models import Conv4
from metasched.schedulers import SCHEDULERS, SchedulerSetup, TaskScheduler
from metasched.tasks import FewShotSampler, LabelNoise, TaskSource, split_reward_classes

# Independent random streams of a run: training draws never shift validation or test tasks.
STREAMS = {"train": 0, "val": 1, "test": 2}
# The reference code draws its "validation" reward tasks from training classes 0..15.
FAITHFUL_REWARD_CLASSES = 16


@dataclass
class Components:
    """What a run is made of."""

    samplers: dict[str, TaskSource]
    model: nn.Module
    learner: MetaLearner
    scheduler: TaskScheduler
    device: torch.device


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MetaschedError(f"train.device={name!r} but CUDA is not available; use auto or cpu")
    return device


def build_samplers(config: Config) -> dict[str, TaskSource]:
    """Train (noisy, budgeted), val and test (clean) episode samplers, and the sampler of the
    schedulers' clean reward tasks (``task.reward_split``): by default half of the
    meta-validation classes, the other half selecting checkpoints."""
    splits = load_dataset(config.data)
    task = config.task
    shape = (task.n_way, task.k_shot, task.q_query)
    val = reward = FewShotSampler(splits.val, *shape)
    if task.reward_split == "val-reward":
        selection, held_out = split_reward_classes(splits.val.num_classes)
        val = FewShotSampler(splits.val, *shape, classes=selection)
        reward = FewShotSampler(splits.val, *shape, classes=held_out)
    elif task.reward_split == "train-16":
        classes = list(range(min(FAITHFUL_REWARD_CLASSES, splits.train.num_classes)))
        reward = FewShotSampler(splits.train, *shape, classes=classes)
    noise = LabelNoise(task.noise_ratio, task.flip_rate, task.noise)
    return {
        "train": FewShotSampler(
            splits.train,
            *shape,
            noise,
            task.train_classes,
            (task.skew_fraction, task.skew_classes),
        ),
        "val": val,
        "test": FewShotSampler(splits.test, *shape),
        "reward": reward,
    }


def build_model(config: Config, in_shape: tuple[int, ...]) -> nn.Module:
    """The network named by ``model.name`` with ``task.n_way`` outputs."""
    if config.model.name == "conv4":
        channels, height, _ = in_shape
        return Conv4(config.task.n_way, channels, config.model.filters, height)
    raise MetaschedError(
        f"model.name={config.model.name!r} does not fit image data; use model.name=conv4"
    )


def build_learner(config: Config, model: nn.Module, device: torch.device) -> MetaLearner:
    """MAML or ANIL with the configured inner loops."""
    spec = config.learner
    batching = spec.batching
    if batching == "auto":
        batching = "grouped" if device.type == "cuda" else "loop"
    train = Adaptation(spec.inner_lr, spec.inner_steps)
    evaluation = Adaptation(spec.eval_inner_lr or spec.inner_lr, spec.eval_inner_steps)
    kind = MAML if spec.algorithm == "maml" else ANIL
    scored = config.scheduler.gradient_layers
    return kind(model, "cross_entropy", train, evaluation, spec.first_order, scored, batching)


def build_scheduler(config: Config, setup: SchedulerSetup) -> TaskScheduler:
    """The task scheduler named by ``scheduler.name``, with its own settings section."""
    return SCHEDULERS[config.scheduler.name](config.scheduler.settings, setup)


def build_components(config: Config) -> Components:
    """Data, samplers, model (seeded with ``config.seed``), learner and scheduler."""
    device = resolve_device(config.train.device)
    samplers = build_samplers(config)
    torch.manual_seed(config.seed)
    train = samplers["train"]
    assert isinstance(train, FewShotSampler)
    model = build_model(config, train.pool.image_shape).to(device)
    learner = build_learner(config, model, device)
    setup = SchedulerSetup(
        num_layers=len(learner.scored_layers()),
        num_classes=train.pool.num_classes,
        n_way=config.task.n_way,
        batch_size=config.train.meta_batch_size,
        iterations=config.train.iterations,
        seed=config.seed,
    )
    scheduler = build_scheduler(config, setup)
    return Components(samplers, model, learner, scheduler, device)
