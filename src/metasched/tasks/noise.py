"""Noise for few-shot tasks: a fraction of the training tasks get corrupted supports.

Two kinds. Per-task noise is a coin flip for every episode: regression tasks
(:class:`TargetNoise`) get additive Gaussian noise on their support targets, classification
tasks (:class:`LabelNoise`) wrong support labels. Source noise (:class:`SourceNoise`) is a
property of where the data came from: a fixed share of the training classes or assays is
corrupted in every episode that draws it, so a scheduler can learn which sources to avoid.

A per-task noisy classification task is corrupted in one of three ways:

A noisy task keeps a clean query set; its support is corrupted in one of three ways (``mode``),
each at ``flip_rate``, the expected fraction of support examples whose label is wrong:

* ``redraw`` (the construction of the ATS reference code, docs/ats.md): every one of the task's
  N (K + Q) images gets a noisy label from the symmetric flip matrix; the support then takes K
  images per *noisy* label, and the query the other N Q images with their true labels. The
  support's label histogram stays balanced (K per label), so a label count gives nothing away.
* ``flip``: the balanced clean support has each label flipped independently. In 5-way 1-shot
  the noisy support then usually lacks a label and repeats another: an easy tell.
* ``permute``: labels are swapped consistently: round(f N) of the N classes (at least 2) are
  relabelled by a random cyclic derangement. The support stays balanced, and its labelling is
  coherent but wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from metasched.errors import MetaschedError

NOISE_MODES = ("redraw", "flip", "permute")


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
class Layout:
    """Which of a task's drawn images form its support and query, and the support's labels.

    Positions index the task's N x (K + Q) draws row by row: position p shows an image of
    class p // (K + Q). Query labels are always the true ones.
    """

    support: np.ndarray
    support_labels: np.ndarray
    query: np.ndarray

    @classmethod
    def clean(cls, n_way: int, k_shot: int, q_query: int) -> Layout:
        """K support then Q query images of each class, in class order."""
        grid = np.arange(n_way * (k_shot + q_query)).reshape(n_way, k_shot + q_query)
        return cls(
            grid[:, :k_shot].ravel(), np.repeat(np.arange(n_way), k_shot), grid[:, k_shot:].ravel()
        )


@dataclass(frozen=True)
class LabelNoise:
    """Each training task is noisy with probability ``task_ratio``; a noisy task's support is
    corrupted by ``mode`` (see the module docstring) at rate ``flip_rate``."""

    task_ratio: float = 0.0
    flip_rate: float = 0.8
    mode: str = "redraw"

    def __post_init__(self) -> None:
        for name, key in (("task_ratio", "noise_ratio"), ("flip_rate", "flip_rate")):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise MetaschedError(f"task.{key} must lie in [0, 1], got {value}")
        if self.mode not in NOISE_MODES:
            raise MetaschedError(f"task.noise={self.mode!r}; use one of {', '.join(NOISE_MODES)}")

    def corrupt(self, n_way: int, k_shot: int, q_query: int, rng: np.random.Generator) -> Layout:
        """The layout of a noisy task (draws from ``rng``)."""
        clean = Layout.clean(n_way, k_shot, q_query)
        if self.mode == "flip":
            transition = symmetric_transition_matrix(n_way, self.flip_rate)
            return Layout(
                clean.support, flip_labels(clean.support_labels, transition, rng), clean.query
            )
        if self.mode == "permute":
            return Layout(
                clean.support, self._permutation(n_way, rng)[clean.support_labels], clean.query
            )
        return self._redraw(n_way, k_shot, q_query, rng)

    def _permutation(self, n_way: int, rng: np.random.Generator) -> np.ndarray:
        """A relabelling that moves round(f N) classes (at least 2 when f > 0) cyclically."""
        moved = round(self.flip_rate * n_way)
        if self.flip_rate > 0:
            moved = max(moved, 2)
        mapping = np.arange(n_way)
        if moved:
            classes = rng.choice(n_way, moved, replace=False)
            mapping[classes] = np.roll(classes, 1)
        return mapping

    def _redraw(self, n_way: int, k_shot: int, q_query: int, rng: np.random.Generator) -> Layout:
        per_class = k_shot + q_query
        positions = np.arange(n_way * per_class)
        transition = symmetric_transition_matrix(n_way, self.flip_rate)
        noisy = flip_labels(positions // per_class, transition, rng)
        taken = np.zeros(len(positions), dtype=bool)
        support, labels = [], []
        for label in range(n_way):
            candidates = np.flatnonzero(noisy == label)
            picked = rng.choice(candidates, min(k_shot, len(candidates)), replace=False)
            taken[picked] = True
            support.append(picked)
            labels.append(np.full(len(picked), label))
        for label in range(n_way):  # top up a label with too few images (rare) from the rest
            missing = k_shot - len(support[label])
            if missing:
                extra = rng.choice(np.flatnonzero(~taken), missing, replace=False)
                taken[extra] = True
                support[label] = np.concatenate([support[label], extra])
                labels[label] = np.full(k_shot, label)
        return Layout(np.concatenate(support), np.concatenate(labels), np.flatnonzero(~taken))


@dataclass(frozen=True)
class TargetNoise:
    """Each training task is noisy with probability ``task_ratio``; a noisy task's support
    targets get independent N(0, ``std``²) noise (the drug reference: every task, std 4 on
    pIC50). Query targets stay clean."""

    task_ratio: float = 0.0
    std: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.task_ratio <= 1.0:
            raise MetaschedError(f"task.noise_ratio must lie in [0, 1], got {self.task_ratio}")
        if not self.std >= 0.0:
            raise MetaschedError(f"task.assays.noise_std must be >= 0, got {self.std}")

    def draw(self, targets: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
        """Noisy targets for a noisy task, ``None`` for a clean one (draws from ``rng``)."""
        if self.task_ratio == 0 or self.std == 0 or not rng.random() < self.task_ratio:
            return None
        return targets + rng.normal(0.0, self.std, len(targets)).astype(targets.dtype)


SOURCE_NOISE_SEED = 3


@dataclass(frozen=True)
class SourceNoise:
    """A fixed share of the training sources is corrupted in every episode that draws them.

    A corrupted class has a partner, another training class: wherever the class appears in a
    support set, the images shown are the partner's (an annotator who confuses two
    characters); its query images stay true. A corrupted assay has its measured values
    shuffled among its compounds, the same way in every episode (a broken extraction). Which
    sources, their partners and the shuffles are fixed by a seed of their own, so every run
    with the same share sees the same noise.
    """

    share: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.share <= 1.0:
            raise MetaschedError(f"task.noisy_sources must lie in [0, 1], got {self.share}")

    def partners(self, units: np.ndarray) -> dict[int, int]:
        """{corrupted unit: its partner} for round(share x len(units)) of ``units``."""
        count = round(self.share * len(units))
        if count == 0:
            return {}
        if len(units) < 2:
            raise MetaschedError("task.noisy_sources needs at least two training classes")
        rng = np.random.default_rng(SOURCE_NOISE_SEED)
        corrupted = rng.choice(units, count, replace=False)
        partners = {}
        for unit in corrupted:
            others = units[units != unit]
            partners[int(unit)] = int(others[rng.integers(len(others))])
        return partners

    def shuffles(self, units: np.ndarray, sizes: Callable[[int], int]) -> dict[int, np.ndarray]:
        """{corrupted unit: a permutation of its rows} for round(share x len(units)) of
        ``units`` (``sizes``: a unit's number of rows)."""
        count = round(self.share * len(units))
        if count == 0:
            return {}
        rng = np.random.default_rng(SOURCE_NOISE_SEED)
        corrupted = rng.choice(units, count, replace=False)
        return {int(u): rng.permutation(sizes(int(u))) for u in corrupted}
