"""N-way K-shot Q-query episodes from a class pool, with label noise and class budgets."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from metasched.data.pool import ClassPool
from metasched.errors import MetaschedError
from metasched.tasks.episode import Episode
from metasched.tasks.noise import LabelNoise, Layout

BUDGET_SEED = 0
REWARD_SPLIT_SEED = 1
SKEW_SEED = 2


def budget_classes(num_classes: int, budget: int | Sequence[int] | None) -> list[int]:
    """The classes a limited budget allows: all, an explicit list, or a count.

    A count ``m`` takes the first ``m`` classes of a permutation with a fixed seed, so that
    every run with the same budget trains on the same classes.
    """
    if budget is None:
        return list(range(num_classes))
    if isinstance(budget, int):
        if not 0 < budget <= num_classes:
            raise MetaschedError(
                f"task.train_classes={budget} but the training split has {num_classes} classes;"
                f" use a count between 1 and {num_classes}"
            )
        order = np.random.default_rng(BUDGET_SEED).permutation(num_classes)
        return sorted(int(c) for c in order[:budget])
    classes = [int(c) for c in budget]
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad or len(set(classes)) != len(classes):
        raise MetaschedError(
            f"task.train_classes must list distinct indices in 0..{num_classes - 1};"
            f" got {bad[0] if bad else 'duplicates'}"
        )
    return classes


def split_reward_classes(num_classes: int) -> tuple[list[int], list[int]]:
    """Meta-validation classes for checkpoint selection and for schedulers' reward tasks: the
    two halves (the first one larger by one when odd) of a permutation with a fixed seed."""
    order = np.random.default_rng(REWARD_SPLIT_SEED).permutation(num_classes)
    half = (num_classes + 1) // 2
    return sorted(int(c) for c in order[:half]), sorted(int(c) for c in order[half:])


class FewShotSampler:
    """Draws N-way K-shot episodes with Q query images per class from a class pool.

    Labels 0..N-1 follow the order in which the classes were drawn. The support holds the K
    images of class 0, then class 1, ...; the query likewise (batch statistics and losses do not
    depend on the order).

    Args:
        pool: the classes to draw from.
        n_way, k_shot, q_query: classes per task, support and query images per class.
        noise: label noise applied to the support of a fraction of the tasks.
        classes: a class budget: these class indices, or a count (see :func:`budget_classes`).
        skew: (fraction, count): that fraction of the tasks draws its classes from a fixed
            subset of ``count`` of the allowed classes (the first of a permutation with a
            fixed seed), so their tasks recur: a skewed task distribution.
    """

    def __init__(
        self,
        pool: ClassPool,
        n_way: int,
        k_shot: int,
        q_query: int,
        noise: LabelNoise | None = None,
        classes: int | Sequence[int] | None = None,
        skew: tuple[float, int] | None = None,
    ) -> None:
        self.pool = pool
        self.n_way, self.k_shot, self.q_query = n_way, k_shot, q_query
        self.noise = noise or LabelNoise()
        self.classes = np.asarray(budget_classes(pool.num_classes, classes))
        self._check()
        self.skew_fraction, self.skewed = 0.0, self.classes
        if skew is not None and skew[0] > 0:
            fraction, count = skew
            if not n_way <= count <= len(self.classes):
                raise MetaschedError(
                    f"task.skew_classes={count} must lie between task.n_way={n_way} and the"
                    f" {len(self.classes)} training classes"
                )
            order = np.random.default_rng(SKEW_SEED).permutation(len(self.classes))
            self.skew_fraction, self.skewed = fraction, np.sort(self.classes[order[:count]])
        self._clean = Layout.clean(n_way, k_shot, q_query)

    def _check(self) -> None:
        if min(self.n_way, self.k_shot, self.q_query) < 1:
            raise MetaschedError(
                f"task sizes must be positive, got n_way={self.n_way}, k_shot={self.k_shot},"
                f" q_query={self.q_query}"
            )
        if self.n_way > len(self.classes):
            raise MetaschedError(
                f"task.n_way={self.n_way} but only {len(self.classes)} classes are available;"
                f" lower task.n_way or allow more classes"
            )
        counts = self.pool.counts()[self.classes]
        need = self.k_shot + self.q_query
        if counts.min() < need:
            label = int(self.classes[int(np.argmin(counts))])
            raise MetaschedError(
                f"class {self.pool.class_names[label]!r} has {counts.min()} images but"
                f" k_shot + q_query = {need}; lower task.k_shot or task.q_query"
            )

    def sample(self, rng: np.random.Generator, index: int | None = None) -> Episode:
        """Draws one episode; a noisy one with probability ``noise.task_ratio`` (``index`` is
        not needed: classes are drawn afresh)."""
        skewed = self.skew_fraction > 0 and bool(rng.random() < self.skew_fraction)
        chosen = rng.choice(self.skewed if skewed else self.classes, self.n_way, replace=False)
        per_class = self.k_shot + self.q_query
        picks = np.stack(
            [
                self.pool.starts[c] + rng.choice(self.pool.counts()[c], per_class, replace=False)
                for c in chosen
            ]
        )
        noisy = self.noise.task_ratio > 0 and bool(rng.random() < self.noise.task_ratio)
        layout = (
            self.noise.corrupt(self.n_way, self.k_shot, self.q_query, rng) if noisy else self._clean
        )
        flat = picks.ravel()
        return Episode(
            support_x=self._images(flat[layout.support]),
            support_y=torch.from_numpy(layout.support_labels),
            query_x=self._images(flat[layout.query]),
            query_y=torch.from_numpy(layout.query // per_class),
            noisy=noisy,
            clean_support_y=torch.from_numpy(layout.support // per_class) if noisy else None,
            source=tuple(int(c) for c in chosen),
            skewed=skewed,
        )

    def _images(self, indices: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.pool.images[indices]).float().div_(255.0)
