"""Any backbone: a plain ``nn.Module`` is meta-learned through torch.func, with the numbers of
the grouped path, and ResNet-12 trains with MAML and ANIL."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from metasched.config import load_config
from metasched.learners import ANIL, MAML, Adaptation, Classification
from metasched.models import Conv4, ResNet12
from metasched.tasks import Episode
from metasched.training.metrics import read_metrics
from metasched.training.trainer import Trainer

from .conftest import directional_derivatives, tiny_overrides


class PlainConv4Backbone(nn.Module):
    """Conv4's features written with stock layers (no grouped computation): conv, batch norm
    without running statistics, ReLU, max-pool."""

    def __init__(self, grouped: nn.Module) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for block in grouped.blocks:
            conv = copy.deepcopy(block.conv)
            norm = nn.BatchNorm2d(conv.out_channels, track_running_stats=False).double()
            with torch.no_grad():
                norm.weight.copy_(block.norm.weight)
                norm.bias.copy_(block.norm.bias)
            layers += [conv, norm, nn.ReLU(), nn.MaxPool2d(2)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).flatten(1)


def _episodes(count: int, size: int = 16, seed: int = 0) -> list[Episode]:
    generator = torch.Generator().manual_seed(seed)
    return [
        Episode(
            torch.rand(6, 1, size, size, dtype=torch.float64, generator=generator),
            torch.tensor([0, 1, 2, 0, 1, 2]),
            torch.rand(9, 1, size, size, dtype=torch.float64, generator=generator),
            torch.tensor([0, 1, 2] * 3),
        )
        for _ in range(count)
    ]


@pytest.mark.parametrize("kind", [ANIL, MAML])
def test_a_plain_module_gives_the_grouped_paths_losses_and_meta_gradient(kind) -> None:
    torch.manual_seed(0)
    grouped = Conv4(3, in_channels=1, filters=4, image_size=16).double()
    plain = copy.deepcopy(grouped)
    plain.backbone = PlainConv4Backbone(grouped.backbone)
    episodes = _episodes(3)
    results = []
    for model in (grouped, plain):
        learner = kind(model, Classification(), Adaptation(0.4, 2), Adaptation(0.4, 2))
        params = learner.parameters()
        outcome = learner.outcomes(params, episodes)
        loss = torch.stack(outcome.graphs).mean()
        conv = [n for n in params if n.endswith("weight") and params[n].dim() == 4]
        weights = [params[n] for n in conv] + [params["head.weight"]]
        results.append((outcome.losses, torch.autograd.grad(loss, weights)))
    (losses_a, grads_a), (losses_b, grads_b) = results
    torch.testing.assert_close(losses_b, losses_a, rtol=1e-9, atol=1e-12)
    for a, b in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-7, atol=1e-10)


def test_resnet12_meta_gradient_matches_finite_differences() -> None:
    """MAML through ResNet-12 (second order, two inner steps): the meta-gradient along a random
    direction of the first convolution equals a central finite difference."""
    torch.manual_seed(1)
    model = ResNet12(3, in_channels=1, width=2).double()
    learner = MAML(model, Classification(), Adaptation(0.3, 2), Adaptation(0.3, 2))
    episodes = _episodes(2, size=8, seed=2)
    params = learner.parameters()
    name = "backbone.blocks.0.conv1.weight"
    direction = torch.randn_like(params[name])

    def meta_loss() -> torch.Tensor:
        return torch.stack(learner.outcomes(learner.parameters(), episodes).graphs).mean()

    # batch norm over six examples at 1x1 makes the loss rough beyond a step of 1e-7
    exact, numeric = directional_derivatives(meta_loss, params[name], direction, 1e-7)
    assert exact == pytest.approx(numeric, rel=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["anil", "maml"])
def test_resnet12_learns_glyphs(tmp_path, glyphs, algorithm: str) -> None:
    """A narrow ResNet-12 meta-trained for 20 updates: its training query accuracy rises well
    above the first iterations' (fixed seed)."""
    settings = {
        "model.name": "resnet12",
        "model.filters": 4,
        "learner.algorithm": algorithm,
        "learner.inner_lr": 0.1,
        "learner.inner_steps": 2,
        "learner.eval_inner_steps": 2,
        "train.iterations": 20,
        "train.meta_batch_size": 4,
        "train.val_every": 20,
        "train.val_tasks": 2,  # evaluation is not what this test checks
        "train.test_tasks": 2,
        "train.checkpoint_every": 20,
    }
    config = load_config("glyphs-5w1s", tiny_overrides(**settings))
    Trainer.create(config, tmp_path / "run").fit(progress=False)
    train = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "train"]
    first, last = (np.mean([r["score"] for r in part]) for part in (train[:5], train[-10:]))
    assert last > first + 0.1 and last > 0.35  # 5-way chance is 0.2
