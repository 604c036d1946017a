"""Few-shot activity regression: each assay is a task, its compounds the examples."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

from metasched.data.assays import parse_value, read_rows
from metasched.data.fingerprints import FingerprintSpec, morgan_fingerprints
from metasched.data.pool import AssayPool, DataSplits
from metasched.data.registry import ASSAYS
from metasched.domains.base import Domain, ModelBuilder, NewTask, PerTaskBaseline
from metasched.errors import MetaschedError
from metasched.learners import Regression, TanimotoGP
from metasched.learners.forest import RandomForestBaseline
from metasched.models import FingerprintMLP
from metasched.tasks import Episode, TaskSource, split_reward_classes
from metasched.tasks.assay_sampler import MIN_SCALE, AssaySampler, budget_assays, support_scaling
from metasched.tasks.noise import SourceNoise, TargetNoise

if TYPE_CHECKING:
    from metasched.config import Config
    from metasched.data.registry import DataSpec

FOREST_TREES = 100


def mlp(config: Config) -> nn.Module:
    """The fingerprint MLP sized by the fingerprint bits and ``model.hidden``."""
    model = config.model
    return FingerprintMLP(
        config.data.fingerprint.bits, 1, model.hidden, batch_norm=model.batch_norm
    )


def forest(config: Config, trees: int = FOREST_TREES, **_: object) -> PerTaskBaseline:
    """A random forest fitted on each task's support alone."""
    return RandomForestBaseline(Regression(), trees, seed=config.seed)


def fingerprint_gp(config: Config, **_: object) -> PerTaskBaseline:
    """A GP on each task's fingerprints (Tanimoto kernel), fitted on its support alone."""
    return TanimotoGP(Regression())


class AssayRegression(Domain):
    """Activity regression on molecules: one assay is one task."""

    name, objective = ASSAYS, Regression()
    models: ClassVar[dict[str, ModelBuilder]] = {"mlp": mlp}
    baselines: ClassVar[dict[str, Callable[..., PerTaskBaseline]]] = {
        "forest": forest,
        "gp": fingerprint_gp,
    }

    def check(self, config: Config) -> None:
        super().check(config)
        assays = config.task.assays
        checks = [
            (config.task.reward_split != "train-16",
             "task.reward_split=train-16 copies the image reference; for assays use val-reward"
             " or val"),
            (assays.min_query >= 1, "task.assays.min_query must be at least 1"),
            (assays.query_cap >= 1, "task.assays.query_cap must be at least 1"),
            (assays.support >= 1 or (assays.support == 0 and assays.source_split == "flags"),
             "task.assays.support must be at least 1 (0, all flagged rows, needs"
             " source_split=flags)"),
            (assays.query_cap >= assays.min_query,
             "task.assays.query_cap must be at least task.assays.min_query"),
            (assays.source_split in ("random", "flags"),
             f"task.assays.source_split={assays.source_split!r}; use random or flags"),
            (assays.min_scale > 0,
             f"task.assays.min_scale must be positive, got {assays.min_scale}; try {MIN_SCALE}"),
            (assays.noise_std >= 0, f"task.assays.noise_std must be >= 0, got {assays.noise_std}"),
            (all(k >= 1 for k in assays.support_choices or ()),
             "task.assays.support_choices must list sizes of at least 1"),
        ]  # fmt: skip
        for ok, message in checks:
            if not ok:
                raise MetaschedError(message)

    def describe(self, spec: DataSpec) -> str:
        bits = spec.fingerprint
        return f"{spec.name}, Morgan fingerprints radius {bits.radius}, {bits.bits} bits:"

    def samplers(self, config: Config, splits: DataSplits[AssayPool]) -> dict[str, TaskSource]:
        spec = config.task.assays

        def sampler(
            pool: AssayPool,
            assays: list[int] | None = None,
            noise: TargetNoise | None = None,
            sources: SourceNoise | None = None,
            choices: list[int] | None = None,
        ) -> AssaySampler:
            return AssaySampler(
                pool,
                spec.support,
                spec.query_cap,
                spec.min_query,
                noise,
                spec.standardise,
                spec.source_split,
                assays,
                spec.min_scale,
                sources,
                choices or (),
            )

        val = reward = sampler(splits.val)
        if config.task.reward_split == "val-reward":
            if splits.val.num_assays < 2:
                raise MetaschedError(
                    "task.reward_split=val-reward needs two meta-validation assays or more;"
                    " use task.reward_split=val"
                )
            selection, held_out = split_reward_classes(splits.val.num_assays)
            val, reward = sampler(splits.val, selection), sampler(splits.val, held_out)
        allowed = budget_assays(splits.train, spec.train_assays, spec.assay_types)
        noise = TargetNoise(config.task.noise_ratio, spec.noise_std)
        sources = SourceNoise(config.task.noisy_sources)
        train = sampler(splits.train, allowed, noise, sources, spec.support_choices)
        return {"train": train, "val": val, "test": sampler(splits.test), "reward": reward}

    def new_task(
        self, config: Config, support: Path, query: Path, profile: dict[str, Any] | None = None
    ) -> NewTask:
        """Support: a CSV of measured compounds (SMILES and value columns, named as
        ``data.csv.smiles`` and ``data.csv.value``); query: a CSV with a SMILES column."""
        columns = config.data.csv
        measured = list(read_rows(support, (columns.smiles, columns.value)))
        values = np.asarray(
            [parse_value(r[columns.value], str(support), n, columns.value) for n, r in measured]
        )
        if not len(measured) or not np.isfinite(values).all():
            raise MetaschedError(f"{support}: every support compound needs a measured value")
        asked = list(read_rows(query, (columns.smiles,)))
        candidates = [r[columns.smiles].strip() for _, r in asked]
        if not candidates:
            raise MetaschedError(f"{query}: no compounds to predict")
        spec = config.data.fingerprint
        support_x = self._fingerprints(
            support, [(n, r[columns.smiles].strip()) for n, r in measured], spec
        )
        query_x = self._fingerprints(
            query, [(n, r[columns.smiles].strip()) for n, r in asked], spec
        )
        shift, scale = 0.0, 1.0
        if config.task.assays.standardise:
            shift, scale = support_scaling(values, config.task.assays.min_scale)
        targets = torch.from_numpy(((values - shift) / scale).astype(np.float32))
        episode = Episode(
            support_x, targets, query_x, torch.zeros(len(candidates)),
            target_shift=shift, target_scale=scale,
        )  # fmt: skip
        return NewTask(episode, candidates)

    @staticmethod
    def _fingerprints(
        path: Path, rows: list[tuple[int, str]], spec: FingerprintSpec
    ) -> torch.Tensor:
        """Fingerprints of (line number, SMILES) rows; an unparsable one names its line."""
        prints = morgan_fingerprints([smiles for _, smiles in rows], spec)
        bad = np.flatnonzero(~prints.parsed)
        if len(bad):
            line, smiles = rows[bad[0]]
            raise MetaschedError(
                f"{path}, line {line}: RDKit cannot parse SMILES {smiles!r}"
                f" ({len(bad)} such rows); fix or remove them"
            )
        bits = prints.packed.shape[1] * 8
        return torch.from_numpy(np.unpackbits(prints.packed, axis=1, count=bits).astype(np.float32))

    def prediction_rows(self, predictions: torch.Tensor, task: NewTask) -> list[list[Any]]:
        """SMILES and predicted value on the assay's scale; with a GP learner also the
        predictive standard deviation (noise included)."""
        episode = task.episode
        values = predictions[..., 0] * episode.target_scale + episode.target_shift
        if predictions.shape[-1] == 1:
            rows: list[list[Any]] = [["smiles", "prediction"]]
            return rows + [[name, f"{float(v):.4f}"] for name, v in zip(task.query_names, values)]
        std = predictions[..., 1].clamp_min(0).sqrt() * episode.target_scale
        rows = [["smiles", "prediction", "std"]]
        rows += [
            [name, f"{float(v):.4f}", f"{float(s):.4f}"]
            for name, v, s in zip(task.query_names, values, std)
        ]
        return rows
