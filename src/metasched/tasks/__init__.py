"""Episodes: N-way K-shot sampling, label noise, class budgets."""

from metasched.tasks.episode import Episode, EpisodeBatch, TaskSource
from metasched.tasks.noise import (
    NOISE_MODES,
    LabelNoise,
    Layout,
    flip_labels,
    symmetric_transition_matrix,
)
from metasched.tasks.sampler import FewShotSampler, budget_classes, split_reward_classes

__all__ = [
    "NOISE_MODES",
    "Episode",
    "EpisodeBatch",
    "FewShotSampler",
    "LabelNoise",
    "Layout",
    "TaskSource",
    "budget_classes",
    "flip_labels",
    "split_reward_classes",
    "symmetric_transition_matrix",
]
