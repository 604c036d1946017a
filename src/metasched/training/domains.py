"""What differs between data domains: the episodes, the network, the objective and the pool
features a domain can give schedulers. The loop, learners and schedulers are shared."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from metasched.config import Config
from metasched.data.assays import parse_value, read_rows
from metasched.data.cache import SPLITS
from metasched.data.fingerprints import FingerprintSpec, morgan_fingerprints
from metasched.data.folder import decode_image, scan_directory
from metasched.data.pool import AssayPool, ClassPool, DataSplits
from metasched.data.registry import ASSAYS, DATASETS, IMAGES
from metasched.errors import MetaschedError
from metasched.learners import Classification, Objective, Regression
from metasched.models import Conv4, FingerprintMLP
from metasched.schedulers import Feature
from metasched.tasks import Episode, FewShotSampler, LabelNoise, TaskSource, split_reward_classes
from metasched.tasks.assay_sampler import AssaySampler, budget_assays, support_scaling
from metasched.tasks.noise import TargetNoise

# The reference code draws its "validation" reward tasks from training classes 0..15.
FAITHFUL_REWARD_CLASSES = 16


@dataclass(frozen=True)
class NewTask:
    """A user's own task: its episode (query answers unknown), a name per query item, and the
    class names behind labels 0..N-1 (classification)."""

    episode: Episode
    query_names: list[str]
    class_names: list[str] = field(default_factory=list)


class Domain(ABC):
    """A kind of data: how its splits become episode samplers, which network and objective
    fit them, and which pool features (:class:`Feature`) schedulers can have."""

    name: str
    objective: Objective
    provides: Feature

    @abstractmethod
    def samplers(self, config: Config, splits: DataSplits[Any]) -> dict[str, TaskSource]:
        """Train (noisy, budgeted), val and test (clean) samplers, and the sampler of the
        schedulers' clean reward tasks (``task.reward_split``): by default half of the
        meta-validation units, the other half selecting checkpoints."""

    @abstractmethod
    def model(self, config: Config) -> nn.Module:
        """The network, sized by the data settings (image size and channels, or bits)."""

    def num_units(self, splits: DataSplits[Any]) -> int:
        """How many training classes a scheduler can track (0: the domain has none)."""
        return 0

    @abstractmethod
    def new_task(self, config: Config, support: Path, query: Path) -> NewTask:
        """A user's own task from files: the support (inputs with known answers) and the query
        inputs to predict."""

    @abstractmethod
    def prediction_rows(self, predictions: torch.Tensor, task: NewTask) -> list[list[Any]]:
        """The predictions file: a header row, then one row per query item."""


class ImageClassification(Domain):
    """N-way K-shot classification of images by class."""

    name, objective = IMAGES, Classification()
    provides = ~Feature.NONE

    def samplers(self, config: Config, splits: DataSplits[ClassPool]) -> dict[str, TaskSource]:
        task = config.task
        shape = (task.n_way, task.k_shot, task.q_query)
        where = f" of data.root={config.data.root}" if config.data.root else ""
        name = {s: f"the {s} split{where} (data.name={config.data.name})" for s in SPLITS}
        val = reward = FewShotSampler(splits.val, *shape, name=name["val"])
        if task.reward_split == "val-reward":
            selection, held_out = split_reward_classes(splits.val.num_classes)
            val = FewShotSampler(splits.val, *shape, classes=selection, name=name["val"])
            reward = FewShotSampler(
                splits.val, *shape, classes=held_out, name=f"the reward half of {name['val']}"
            )
        elif task.reward_split == "train-16":
            classes = list(range(min(FAITHFUL_REWARD_CLASSES, splits.train.num_classes)))
            reward = FewShotSampler(splits.train, *shape, classes=classes, name=name["train"])
        noise = LabelNoise(task.noise_ratio, task.flip_rate, task.noise)
        train = FewShotSampler(
            splits.train,
            *shape,
            noise,
            task.train_classes,
            (task.skew_fraction, task.skew_classes),
            name["train"],
        )
        return {
            "train": train,
            "val": val,
            "test": FewShotSampler(splits.test, *shape, name=name["test"]),
            "reward": reward,
        }

    def model(self, config: Config) -> nn.Module:
        data = config.data  # loading checks that the images have these channels and size
        return Conv4(config.task.n_way, data.channels, config.model.filters, data.image_size)

    def num_units(self, splits: DataSplits[ClassPool]) -> int:
        return splits.train.num_classes

    def new_task(self, config: Config, support: Path, query: Path) -> NewTask:
        """Support: a folder of class sub-folders of images; query: a folder of images."""
        data = config.data
        classes, read = scan_directory(support) if support.is_dir() else ({}, None)
        names = sorted(classes)
        if len(names) != config.task.n_way:
            raise MetaschedError(
                f"{support}: {len(names)} class folders of images, but the run was trained on"
                f" {config.task.n_way}-way tasks; give {config.task.n_way} class sub-folders"
            )
        files = sorted(p for p in query.iterdir() if p.is_file()) if query.is_dir() else []

        def images(blobs: list[bytes]) -> torch.Tensor:
            arrays = [decode_image(b, data.image_size, data.channels, data.invert) for b in blobs]
            return torch.from_numpy(np.stack(arrays)).float().div_(255.0)

        try:
            support_x = images([read(f) for c in names for f in classes[c]]) if read else None
            query_x = images([f.read_bytes() for f in files]) if files else None
        except OSError as error:  # PIL's UnidentifiedImageError is an OSError
            raise MetaschedError(f"cannot read an image ({error}); remove or replace it") from error
        if support_x is None or query_x is None:
            raise MetaschedError(f"{query}: no query images; give a folder of image files")
        labels = torch.tensor([i for i, c in enumerate(names) for _ in classes[c]])
        episode = Episode(support_x, labels, query_x, torch.zeros(len(files), dtype=torch.long))
        return NewTask(episode, [f.name for f in files], names)

    def prediction_rows(self, predictions: torch.Tensor, task: NewTask) -> list[list[Any]]:
        probabilities = torch.softmax(predictions, dim=-1)
        best = probabilities.argmax(-1)
        rows: list[list[Any]] = [["image", "predicted_class", "probability"]]
        for name, label, p in zip(task.query_names, best.tolist(), probabilities):
            rows.append([name, task.class_names[label], f"{float(p[label]):.4f}"])
        return rows


class AssayRegression(Domain):
    """Activity regression on molecules: one assay is one task."""

    name, objective = ASSAYS, Regression()
    provides = ~Feature.CLASSES

    def samplers(self, config: Config, splits: DataSplits[AssayPool]) -> dict[str, TaskSource]:
        spec = config.task.assays

        def sampler(
            pool: AssayPool, assays: list[int] | None = None, noise: TargetNoise | None = None
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
        train = sampler(splits.train, allowed, noise)
        return {"train": train, "val": val, "test": sampler(splits.test), "reward": reward}

    def model(self, config: Config) -> nn.Module:
        bits, model = config.data.fingerprint.bits, config.model
        return FingerprintMLP(bits, 1, model.hidden, batch_norm=model.batch_norm)

    def new_task(self, config: Config, support: Path, query: Path) -> NewTask:
        """Support: a CSV of measured compounds (SMILES and value columns, named as
        ``data.csv.smiles`` and ``data.csv.value``); query: a CSV with a SMILES column."""
        columns = config.data.csv
        measured = list(read_rows(support, (columns.smiles, columns.value)))
        values = np.asarray(
            [parse_value(r[columns.value], str(support), n, columns.value) for n, r in measured]
        )
        if not len(measured) or not np.isfinite(values).all():
            raise MetaschedError(f"{support}: every support compound needs a measured value")
        candidates = [r[columns.smiles].strip() for _, r in read_rows(query, (columns.smiles,))]
        if not candidates:
            raise MetaschedError(f"{query}: no compounds to predict")
        spec = config.data.fingerprint
        support_x = self._fingerprints(
            support, [r[columns.smiles].strip() for _, r in measured], spec
        )
        query_x = self._fingerprints(query, candidates, spec)
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
    def _fingerprints(path: Path, smiles: list[str], spec: FingerprintSpec) -> torch.Tensor:
        prints = morgan_fingerprints(smiles, spec)
        bad = np.flatnonzero(~prints.parsed)
        if len(bad):
            raise MetaschedError(
                f"{path}, line {bad[0] + 2}: RDKit cannot parse SMILES {smiles[bad[0]]!r}"
                f" ({len(bad)} such rows); fix or remove them"
            )
        bits = prints.packed.shape[1] * 8
        return torch.from_numpy(np.unpackbits(prints.packed, axis=1, count=bits).astype(np.float32))

    def prediction_rows(self, predictions: torch.Tensor, task: NewTask) -> list[list[Any]]:
        episode = task.episode
        values = predictions.squeeze(-1) * episode.target_scale + episode.target_shift
        rows: list[list[Any]] = [["smiles", "prediction"]]
        rows += [[name, f"{float(v):.4f}"] for name, v in zip(task.query_names, values)]
        return rows


DOMAINS: dict[str, Domain] = {d.name: d for d in (ImageClassification(), AssayRegression())}


def domain_of(config: Config) -> Domain:
    """The domain of the configured data set."""
    return DOMAINS[DATASETS[config.data.name].domain]
