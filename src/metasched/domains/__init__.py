"""Data domains as objects (:class:`Domain`): each owns its checks, samplers, models,
objective, baselines and words. The loop, learners and schedulers are shared.

Example:
    >>> from metasched.config import load_config
    >>> domain_of(load_config("drug-demo")).name
    'assays'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from metasched.data.registry import DATASETS
from metasched.domains.assays import AssayRegression
from metasched.domains.base import Domain, NewTask, PerTaskBaseline
from metasched.domains.images import ImageClassification

if TYPE_CHECKING:
    from metasched.config import Config

#: Every domain by name, as data sets declare theirs.
DOMAINS: dict[str, Domain] = {d.name: d for d in (ImageClassification(), AssayRegression())}


def domain_of(config: Config) -> Domain:
    """The domain of the configured data set."""
    return domain_of_data(config.data.name)


def domain_of_data(name: str) -> Domain:
    """The domain of data set ``name`` (a key of :data:`metasched.data.registry.DATASETS`)."""
    return DOMAINS[DATASETS[name].domain]


__all__ = [
    "DOMAINS",
    "AssayRegression",
    "Domain",
    "ImageClassification",
    "NewTask",
    "PerTaskBaseline",
    "domain_of",
    "domain_of_data",
]
