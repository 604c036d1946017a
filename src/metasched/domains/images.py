"""Few-shot image classification: N-way K-shot tasks of images drawn by class."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

from metasched.data.cache import SPLITS
from metasched.data.folder import decode_image, scan_directory
from metasched.data.pool import ClassPool, DataSplits
from metasched.data.registry import IMAGES, load_dataset
from metasched.domains.base import Domain, ModelBuilder, NewTask
from metasched.errors import MetaschedError
from metasched.learners import Classification
from metasched.models import Conv4, ResNet12
from metasched.tasks import Episode, FewShotSampler, LabelNoise, TaskSource, split_reward_classes
from metasched.tasks.noise import SourceNoise

if TYPE_CHECKING:
    from metasched.config import Config
    from metasched.data.registry import DataSpec

# The reference code draws its "validation" reward tasks from training classes 0..15.
FAITHFUL_REWARD_CLASSES = 16


def conv4(config: Config) -> nn.Module:
    """Conv4 sized by the data (channels, image size) and ``model.filters``."""
    data = config.data  # loading checks that the images have these channels and size
    return Conv4(config.task.n_way, data.channels, config.model.filters, data.image_size)


def resnet12(config: Config) -> nn.Module:
    """ResNet-12 of widths (w, 2.5w, 5w, 10w), w = ``model.filters`` (64: 64-160-320-640)."""
    return ResNet12(config.task.n_way, config.data.channels, config.model.filters)


#: Images sampled (evenly spaced) to find the training data's background.
PROFILED_IMAGES = 256


def background(images: np.ndarray) -> str:
    """``dark`` or ``light`` when most of a set of uint8 (N, C, H, W) images have a dark or a
    light median pixel (line drawings: ink on a plain ground), else ``mixed`` (photographs)."""
    medians = np.median(images.reshape(len(images), -1), axis=1)
    if np.mean(medians < 64) > 0.5:
        return "dark"
    if np.mean(medians > 191) > 0.5:
        return "light"
    return "mixed"


def _profile_of_training_data(domain: Domain, config: Config) -> dict[str, Any]:
    """The input profile of the run's training data, or none where it cannot be read here."""
    try:
        return domain.input_profile(load_dataset(config.data))
    except MetaschedError:
        return {}


class ImageClassification(Domain):
    """N-way K-shot classification of images by class."""

    name, objective = IMAGES, Classification()
    models: ClassVar[dict[str, ModelBuilder]] = {"conv4": conv4, "resnet12": resnet12}

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
            SourceNoise(task.noisy_sources),
        )
        return {
            "train": train,
            "val": val,
            "test": FewShotSampler(splits.test, *shape, name=name["test"]),
            "reward": reward,
        }

    def describe(self, spec: DataSpec) -> str:
        return f"{spec.name} at {spec.image_size}x{spec.image_size}:"

    def num_units(self, splits: DataSplits[ClassPool]) -> int:
        return splits.train.num_classes

    def input_profile(self, splits: DataSplits[ClassPool]) -> dict[str, Any]:
        """The training images' background (:func:`background`)."""
        images = splits.train.images
        if not len(images):
            return {}
        picks = np.linspace(0, len(images) - 1, min(PROFILED_IMAGES, len(images))).astype(int)
        return {"background": background(np.asarray(images[picks]))}

    def new_task(
        self, config: Config, support: Path, query: Path, profile: dict[str, Any] | None = None
    ) -> NewTask:
        """Support: a folder of class sub-folders of images; query: a folder of images. Images
        whose background is the opposite of the training images' (dark ink on white against
        bright ink on black) are inverted, and a line says so."""
        data = config.data
        classes, read = scan_directory(support) if support.is_dir() else ({}, None)
        names = sorted(classes)
        if len(names) != config.task.n_way:
            raise MetaschedError(
                f"{support}: {len(names)} class folders of images, but the run was trained on"
                f" {config.task.n_way}-way tasks; give {config.task.n_way} class sub-folders"
            )
        files = sorted(p for p in query.iterdir() if p.is_file()) if query.is_dir() else []

        def images(paths: list[str], reader: Callable[[str], bytes]) -> np.ndarray:
            arrays = []
            for path in paths:
                try:
                    blob = reader(path)
                    arrays.append(decode_image(blob, data.image_size, data.channels, data.invert))
                except (OSError, MetaschedError) as error:  # PIL's errors are OSErrors
                    raise MetaschedError(
                        f"cannot read the image {path} ({error}); remove or replace it"
                    ) from error
            return np.stack(arrays)

        if read is None or not files:
            raise MetaschedError(f"{query}: no query images; give a folder of image files")
        support_x = images([f for c in names for f in classes[c]], read)
        query_x = images([str(f) for f in files], read)
        if profile is None:  # a checkpoint from before profiles: read the training data
            profile = _profile_of_training_data(self, config)
        expected = profile.get("background")
        found = background(np.concatenate([support_x, query_x]))
        if {expected, found} == {"dark", "light"}:
            support_x, query_x = 255 - support_x, 255 - query_x
            print(
                f"note: these images have a {found} background and the training images a"
                f" {expected} one; inverted them to match (as data.invert would)",
                file=sys.stderr,
            )
        labels = torch.tensor([i for i, c in enumerate(names) for _ in classes[c]])
        episode = Episode(
            torch.from_numpy(support_x).float().div_(255.0),
            labels,
            torch.from_numpy(query_x).float().div_(255.0),
            torch.zeros(len(files), dtype=torch.long),
        )
        return NewTask(episode, [f.name for f in files], names)

    def prediction_rows(self, predictions: torch.Tensor, task: NewTask) -> list[list[Any]]:
        probabilities = torch.softmax(predictions, dim=-1)
        best = probabilities.argmax(-1)
        rows: list[list[Any]] = [["image", "predicted_class", "probability"]]
        for name, label, p in zip(task.query_names, best.tolist(), probabilities):
            rows.append([name, task.class_names[label], f"{float(p[label]):.4f}"])
        return rows
