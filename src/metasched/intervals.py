"""Intervals and score formatting shared by every table: a task-level normal interval, a
seed-level Student-t interval, and how a score is printed.

Example:
    >>> round(t_interval([0.95, 0.96, 0.94]), 4)
    0.0248
    >>> format_score(0.9512, 0.0041, percent=True)
    '95.12 ± 0.41%'
    >>> format_difference([0.03, 0.01, 0.03], digits=3)
    '+0.023 ± 0.029 (3/3)'
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def normal_interval(values: np.ndarray) -> float:
    """Half-width of the normal 95% interval of the mean, 1.96 s / sqrt(n), over many tasks
    (NaNs left out; NaN for fewer than two values)."""
    values = values[np.isfinite(values)]
    if len(values) < 2:
        return float("nan")
    return float(1.96 * values.std(ddof=1) / math.sqrt(len(values)))


def t_interval(values: Sequence[float] | np.ndarray) -> float:
    """Half-width of the Student-t 95% interval of the mean, for a few values (seeds, or
    paired differences); NaN for fewer than two."""
    from scipy import stats

    array = np.asarray(values, dtype=float)
    if len(array) < 2:
        return float("nan")
    half = stats.t.ppf(0.975, len(array) - 1) * array.std(ddof=1) / math.sqrt(len(array))
    return float(half)


def score_scale(percent: bool) -> tuple[float, int]:
    """How a score (or a difference of scores) is printed: points with 2 decimals for a
    percentage, 3 decimals of the value itself otherwise (R² differences of thousandths)."""
    return (100.0, 2) if percent else (1.0, 3)


def format_score(value: float, interval: float, percent: bool) -> str:
    """``"95.12 ± 0.41%"`` for a percentage score, ``"0.312 ± 0.041"`` for a plain one; no
    interval part when it is not finite."""
    scale, digits = score_scale(percent)
    unit = "%" if percent else ""
    width = f" ± {scale * interval:.{digits}f}" if math.isfinite(interval) else ""
    return f"{scale * value:.{digits}f}{width}{unit}"


def format_difference(differences: Sequence[float] | np.ndarray, digits: int) -> str:
    """Paired differences (one per seed) as their mean, its Student-t interval (with two or
    more) and how many are above zero: ``"+2.33 ± 2.87 (3/3)"``."""
    array = np.asarray(differences, dtype=float)
    half = t_interval(array)
    width = f" ± {half:.{digits}f}" if math.isfinite(half) else ""
    return f"{array.mean():+.{digits}f}{width} ({int((array > 0).sum())}/{len(array)})"
