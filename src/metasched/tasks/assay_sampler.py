"""Regression episodes from an assay pool: one assay is one task."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from metasched.data.pool import AssayPool
from metasched.errors import MetaschedError
from metasched.tasks.episode import Episode
from metasched.tasks.noise import SourceNoise, TargetNoise
from metasched.tasks.sampler import budget_classes

SOURCE_SPLITS = ("random", "flags")
MIN_SCALE = 0.05  # in log10 activity units: below any assay's meaningful resolution


def support_scaling(targets: np.ndarray, min_scale: float = MIN_SCALE) -> tuple[float, float]:
    """(shift, scale) that standardise targets by the support's mean and standard deviation,
    the scale floored at ``min_scale``.

    Some assays are nearly constant (a censored value repeated): dividing by their tiny spread
    would blow their query targets up, while a scale of 1 would let the model's predictions
    vary far more than the assay ever does. The floor keeps predictions near a flat support.
    """
    return float(targets.mean()), max(float(targets.std()), min_scale)


def budget_assays(
    pool: AssayPool,
    budget: int | Sequence[str] | None = None,
    types: Sequence[str] | None = None,
) -> list[int]:
    """The assays a limited budget allows: those of the given ``types`` (e.g. FS-Mol's
    ``B``), then all of them, a count (the first of a seeded permutation, as class budgets)
    or a list of assay ids."""
    allowed = list(range(pool.num_assays))
    if types is not None:
        allowed = [a for a in allowed if pool.assay_types[a] in set(types)]
        if not allowed:
            present = ", ".join(sorted(set(pool.assay_types))) or "none"
            raise MetaschedError(
                f"task.assays.assay_types={list(types)} matches no assay; types here: {present}"
            )
    names = [pool.assay_ids[a] for a in allowed]
    return sorted(allowed[i] for i in budget_classes(names, budget, "task.assays.train_assays"))


class AssaySampler:
    """Draws regression episodes: an assay, K of its compounds as the support and (up to
    ``query_cap`` of) the rest as the query.

    Args:
        pool: the assays to draw from.
        support: K, the support size (FS-Mol's common choices: 16, 32, 64, 128); with
            ``source_split="flags"``, 0 takes every flagged training row (the reference).
        query_cap: the most query compounds an episode keeps (a random subset beyond it).
        min_query: assays with fewer than ``support + min_query`` usable rows are left out.
        noise: Gaussian noise on the support targets of a fraction of the episodes.
        standardise: shift and scale the targets by the (noisy) support's mean and standard
            deviation (at least ``min_scale``); the episode keeps both so that metrics return
            to the original scale.
        source_split: ``random`` draws the support from all of an assay's rows; ``flags``
            draws it from the rows the source marks as its training rows and takes the query
            from those it marks as test rows (pQSAR's TRN/TST, MoleculeACE's split).
        assays: the allowed assay indices (a budget, :func:`budget_assays`).
        support_choices: support sizes to draw from, one per episode among those the assay
            allows (``support`` + ``min_query`` rows at least); empty: always ``support``.
        source_noise: a fixed share of the allowed assays has its values shuffled among its
            compounds, the same way in every episode (:class:`SourceNoise`); their episodes
            are noisy, query included.
    """

    def __init__(
        self,
        pool: AssayPool,
        support: int,
        query_cap: int,
        min_query: int = 1,
        noise: TargetNoise | None = None,
        standardise: bool = False,
        source_split: str = "random",
        assays: Sequence[int] | None = None,
        min_scale: float = MIN_SCALE,
        source_noise: SourceNoise | None = None,
        support_choices: Sequence[int] = (),
    ) -> None:
        least = 0 if source_split == "flags" else 1
        if support < least or min_query < 1 or query_cap < min_query:
            raise MetaschedError(
                f"task.assays: support={support} and min_query={min_query} must be >= 1 (support"
                f" 0 only with source_split=flags) and query_cap={query_cap} >= min_query"
            )
        if source_split not in SOURCE_SPLITS:
            raise MetaschedError(
                f"task.assays.source_split={source_split!r}; use {' or '.join(SOURCE_SPLITS)}"
            )
        self.pool, self.support, self.query_cap = pool, support, query_cap
        self.min_query, self.support_choices = min_query, sorted(support_choices)
        self.noise = noise or TargetNoise()
        self.standardise, self.source_split = standardise, source_split
        self.min_scale = min_scale
        allowed = list(range(pool.num_assays)) if assays is None else list(assays)
        self.assays = np.asarray([a for a in allowed if self._usable(a, min_query)], np.int64)
        self.excluded = len(allowed) - len(self.assays)
        if not len(self.assays):
            raise MetaschedError(
                f"no assay of {len(allowed)} has support + min_query = {support + min_query}"
                f" usable compounds; lower task.assays.support or task.assays.min_query"
            )
        noise_of_sources = source_noise or SourceNoise()
        self.shuffled = noise_of_sources.shuffles(self.assays, lambda a: len(pool.rows(a)))

    def _split_rows(self, assay: int) -> tuple[np.ndarray, np.ndarray]:
        """The rows a support may come from, and those a query may come from (``None`` role:
        the same rows, disjoint draws)."""
        rows = self.pool.rows(assay)
        if self.source_split == "random":
            return rows, rows
        roles = self.pool.roles[rows]
        return rows[roles == 0], rows[roles == 1]

    def _usable(self, assay: int, min_query: int) -> bool:
        support_rows, query_rows = self._split_rows(assay)
        if self.source_split == "random":
            return len(support_rows) >= self.support + min_query
        return len(support_rows) >= max(self.support, 1) and len(query_rows) >= min_query

    def sample(self, rng: np.random.Generator, index: int | None = None) -> Episode:
        """Draws one episode: from assay ``index`` mod the allowed count when given (so an
        evaluation covers every assay in turn), else from a uniformly drawn assay."""
        position = index % len(self.assays) if index is not None else rng.integers(len(self.assays))
        assay = int(self.assays[position])
        support_rows, query_rows = self._split_rows(assay)
        if self.source_split == "random":
            size = self.support
            if self.support_choices:
                fits = [k for k in self.support_choices if len(support_rows) >= k + self.min_query]
                size = int(rng.choice(fits)) if fits else size
            order = rng.permutation(support_rows)
            support, query = order[:size], order[size:]
        else:
            count = self.support or len(support_rows)
            support = rng.choice(support_rows, count, replace=False)
            query = rng.permutation(query_rows)
        query = np.sort(query[: self.query_cap])
        return self.episode(assay, support, query, rng)

    def episode(
        self,
        assay: int,
        support: np.ndarray,
        query: np.ndarray,
        rng: np.random.Generator | None = None,
    ) -> Episode:
        """The episode of ``assay`` with these support and query rows: support noise drawn
        from ``rng`` (none without one), targets standardised by the support if asked."""
        clean = self._values(assay, support)
        noisy = self.noise.draw(clean, rng) if rng is not None else None
        support_y = clean if noisy is None else noisy
        shift, scale = 0.0, 1.0
        if self.standardise:
            shift, scale = support_scaling(support_y, self.min_scale)
        return Episode(
            support_x=torch.from_numpy(self.pool.inputs(support)),
            support_y=self._scaled(support_y, shift, scale),
            query_x=torch.from_numpy(self.pool.inputs(query)),
            query_y=self._scaled(self._values(assay, query), shift, scale),
            noisy=noisy is not None or assay in self.shuffled,
            clean_support_y=self._scaled(clean, shift, scale) if noisy is not None else None,
            source=(assay,),
            source_name=self.pool.assay_ids[assay],
            target_shift=shift,
            target_scale=scale,
        )

    def _values(self, assay: int, rows: np.ndarray) -> np.ndarray:
        """The targets of ``rows`` of ``assay``: shuffled within the assay if it is corrupted."""
        shuffle = self.shuffled.get(assay)
        if shuffle is None:
            return self.pool.targets[rows]
        every = self.pool.rows(assay)
        return self.pool.targets[every[shuffle]][np.searchsorted(every, rows)]

    @staticmethod
    def _scaled(targets: np.ndarray, shift: float, scale: float) -> torch.Tensor:
        return torch.from_numpy(((targets - shift) / scale).astype(np.float32))
