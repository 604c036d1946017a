"""Episodes: N-way K-shot sampling, label noise, class budgets."""

from metasched.tasks.episode import Episode, EpisodeBatch, TaskSource
from metasched.tasks.noise import LabelNoise, flip_labels, symmetric_transition_matrix
from metasched.tasks.sampler import FewShotSampler, budget_classes

__all__ = [
    "Episode",
    "EpisodeBatch",
    "FewShotSampler",
    "LabelNoise",
    "TaskSource",
    "budget_classes",
    "flip_labels",
    "symmetric_transition_matrix",
]
