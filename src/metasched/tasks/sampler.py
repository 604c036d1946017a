"""N-way K-shot Q-query episodes from a class pool, with label noise and class budgets."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from metasched.data.pool import ClassPool
from metasched.errors import MetaschedError
from metasched.tasks.episode import Episode
from metasched.tasks.noise import LabelNoise, Layout, SourceNoise

BUDGET_SEED = 0
REWARD_SPLIT_SEED = 1
SKEW_SEED = 2


Budget = int | Sequence[int] | Sequence[str] | str | None


def budget_classes(
    names: Sequence[str], budget: Budget, setting: str = "task.train_classes"
) -> list[int]:
    """The classes (indices into ``names``) a limited budget allows.

    Args:
        names: the training split's class (or assay) names.
        budget: ``None`` (all); a count ``m``, the first ``m`` classes of a permutation with a
            fixed seed, so every run with the same budget trains on the same classes; a list of
            indices; a list of names (a name also matches the last ``/`` part of a class name,
            e.g. a wnid); or the path of a text file of names, one per line (``#`` comments).
        setting: the config key, for messages.
    """
    count = len(names)
    if budget is None:
        return list(range(count))
    if isinstance(budget, str):
        budget = _read_names(Path(budget), setting)
    if isinstance(budget, int):
        if not 0 < budget <= count:
            raise MetaschedError(
                f"{setting}={budget} but the training split has {count}; use a count between 1"
                f" and {count}"
            )
        order = np.random.default_rng(BUDGET_SEED).permutation(count)
        return sorted(int(c) for c in order[:budget])
    items: list[int | str] = list(budget)
    if all(isinstance(c, int) for c in items):
        chosen = [c for c in items if isinstance(c, int)]
        bad = [c for c in chosen if not 0 <= c < count]
        if bad:
            raise MetaschedError(f"{setting} must list indices in 0..{count - 1}; got {bad[0]}")
    else:
        index: dict[str, int] = {}
        for i, name in enumerate(names):
            index[name] = i
            index.setdefault(name.rsplit("/", 1)[-1], i)
        unknown = [str(c) for c in items if str(c) not in index]
        if unknown:
            raise MetaschedError(
                f"{setting} names {unknown[0]!r}, which is not one of the {count} in the training"
                f" split (e.g. {names[0]!r}); check the name or the data set"
            )
        chosen = [index[str(c)] for c in items]
    if len(set(chosen)) != len(chosen):
        raise MetaschedError(f"{setting} lists a class twice; list each once")
    return chosen


def _read_names(path: Path, setting: str) -> list[str]:
    """Names from a text file, one per line; blank lines and ``#`` comments are skipped."""
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise MetaschedError(
            f"{setting}={str(path)!r}: cannot read it ({error.strerror or error}); give a count,"
            " a list, or the path of a file of class names, one per line"
        ) from error
    names = [line.split("#", 1)[0].strip() for line in lines]
    names = [name for name in names if name]
    if not names:
        raise MetaschedError(f"{setting}={str(path)!r}: the file lists no class names")
    return names


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
        classes: a class budget: a count, indices, names or a file (see :func:`budget_classes`).
        skew: (fraction, count): that fraction of the tasks draws its classes from a fixed
            subset of ``count`` of the allowed classes (the first of a permutation with a
            fixed seed), so their tasks recur: a skewed task distribution.
        name: which split (and part) this is, for messages, e.g. "val split of data.root=DIR".
        source_noise: a fixed share of the allowed classes shows its partner's images in
            every support (:class:`SourceNoise`); such episodes are noisy too.
    """

    def __init__(
        self,
        pool: ClassPool,
        n_way: int,
        k_shot: int,
        q_query: int,
        noise: LabelNoise | None = None,
        classes: Budget = None,
        skew: tuple[float, int] | None = None,
        name: str = "the split",
        source_noise: SourceNoise | None = None,
    ) -> None:
        self.pool = pool
        self.name = name
        self.n_way, self.k_shot, self.q_query = n_way, k_shot, q_query
        self.noise = noise or LabelNoise()
        self.classes = np.asarray(budget_classes(pool.class_names, classes))
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
        self.partners = (source_noise or SourceNoise()).partners(self.classes)

    def _check(self) -> None:
        if min(self.n_way, self.k_shot, self.q_query) < 1:
            raise MetaschedError(
                f"task sizes must be positive, got n_way={self.n_way}, k_shot={self.k_shot},"
                f" q_query={self.q_query}"
            )
        if self.n_way > len(self.classes):
            raise MetaschedError(
                f"{self.name} has {len(self.classes)} classes, fewer than task.n_way={self.n_way};"
                " give it more classes, or lower task.n_way"
            )
        counts = self.pool.counts()[self.classes]
        need = self.k_shot + self.q_query
        if counts.min() < need:
            label = int(self.classes[int(np.argmin(counts))])
            raise MetaschedError(
                f"class {self.pool.class_names[label]!r} of {self.name} has {counts.min()} images"
                f" but k_shot + q_query = {need}; lower task.k_shot or task.q_query, or give the"
                " class more images"
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
        corrupted = self._show_partners(flat, layout.support, chosen, rng) if self.partners else 0
        noisy = noisy or corrupted > 0
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

    def _show_partners(
        self, flat: np.ndarray, support: np.ndarray, chosen: np.ndarray, rng: np.random.Generator
    ) -> int:
        """Replaces, in ``flat``, the support images of corrupted classes by images of their
        partners; returns how many were replaced."""
        per_class = self.k_shot + self.q_query
        replaced = 0
        for row, c in enumerate(chosen):
            partner = self.partners.get(int(c))
            if partner is None:
                continue
            positions = support[support // per_class == row]
            drawn = rng.choice(self.pool.counts()[partner], len(positions), replace=False)
            flat[positions] = self.pool.starts[partner] + drawn
            replaced += len(positions)
        return replaced

    def _images(self, indices: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.pool.take(indices)).float().div_(255.0)
