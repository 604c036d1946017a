"""Label noise for few-shot tasks: a fraction of tasks get their support labels flipped."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from metasched.errors import MetaschedError


def symmetric_transition_matrix(num_classes: int, flip_rate: float) -> np.ndarray:
    """T[i, j] = P(noisy label j | true label i): keep with 1 - f, else any other class evenly.

    With 5 classes and f = 0.8 (the paper's setting) every entry is 0.2: noisy labels are
    uniformly random and carry no information about the true class.
    """
    if num_classes < 2:
        raise MetaschedError(f"label noise needs at least 2 classes, got {num_classes}")
    matrix = np.full((num_classes, num_classes), flip_rate / (num_classes - 1))
    np.fill_diagonal(matrix, 1.0 - flip_rate)
    return matrix


def flip_labels(labels: np.ndarray, transition: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draws each label's noisy version from its row of the transition matrix."""
    cumulative = np.cumsum(transition[labels], axis=1)
    draws = rng.random((len(labels), 1))
    noisy = (draws > cumulative).sum(axis=1)
    return np.minimum(noisy, transition.shape[1] - 1)


@dataclass(frozen=True)
class LabelNoise:
    """Each task is noisy with probability ``task_ratio``; a noisy task's support labels are
    flipped with the symmetric matrix at rate ``flip_rate``. Query labels are never touched."""

    task_ratio: float = 0.0
    flip_rate: float = 0.8

    def __post_init__(self) -> None:
        for name in ("task_ratio", "flip_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise MetaschedError(f"task.noise.{name} must lie in [0, 1], got {value}")
