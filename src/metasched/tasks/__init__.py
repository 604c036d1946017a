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

#: The results version of this layer: bump it in the commit that changes the episodes drawn from
#: them (classes, supports, queries, noise), i.e. any number a run records (tests/golden replays
#: short runs and fails otherwise).
RESULTS_VERSION = 1

__all__ = [
    "NOISE_MODES",
    "RESULTS_VERSION",
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
