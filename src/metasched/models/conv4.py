"""Conv4: four [conv 3x3, batch norm, ReLU, max-pool 2] blocks and a linear head."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from metasched.errors import MetaschedError
from metasched.models.layout import cpu_layout
from metasched.models.norm import TaskBatchNorm


class ConvBlock(nn.Module):
    """conv 3x3, batch norm, ReLU, max-pool 2, computed as max-pool before ReLU.

    ReLU is monotone, so it commutes with max-pooling: outputs and gradients are those of the
    textbook order, and the rectifier runs on a quarter of the activations (a uniform 84x84
    ANIL iteration on CPU takes 8.5% less time: docs/benchmarks.md; ``tests/test_models.py``
    checks the equality).
    """

    cancelled_by_norm = ("conv.bias",)  # batch norm subtracts it again: zero gradient

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.norm = TaskBatchNorm(out_channels)

    def forward(self, x: torch.Tensor, tasks: int = 1) -> torch.Tensor:
        return F.relu(F.max_pool2d(self.norm(self.conv(x), tasks), 2))


class Conv4Backbone(nn.Module):
    """The feature extractor: (N, C, H, W) or (T, N, C, H, W) images to flat features.

    A leading task dimension T makes every task use its own batch-norm statistics, so several
    tasks can share one batched forward pass. On CPUs it runs channels-last
    (:func:`metasched.models.layout.cpu_layout`).
    """

    def __init__(self, in_channels: int = 1, filters: int = 64, image_size: int = 28) -> None:
        super().__init__()
        side = image_size
        for _ in range(4):
            side //= 2
        if side < 1:
            raise MetaschedError(
                f"Conv4 halves the image four times, so data.image_size={image_size} is too"
                " small; use at least 16"
            )
        channels = [in_channels, filters, filters, filters, filters]
        self.blocks = nn.ModuleList(ConvBlock(a, b) for a, b in itertools.pairwise(channels))
        self.out_features = filters * side * side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-3]
        tasks = lead[0] if len(lead) == 2 else 1
        h = cpu_layout(x.reshape(-1, *x.shape[-3:]))
        for block in self.blocks:
            h = block(h, tasks)
        return h.reshape(*lead, -1)

    def grouped(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Features of T tasks at once, each with its own weights: (T, N, C, H, W) to (T, N, D).

        ``params`` holds this module's parameters with a leading task dimension T (e.g.
        ``blocks.0.conv.weight`` of shape (T, filters, C, 3, 3)). Tasks become convolution
        groups and batch-norm channels, so every task keeps its own batch statistics, and one
        backward pass gives each task its own weight gradients.
        """
        tasks, n = x.shape[:2]
        h = x.transpose(0, 1).flatten(1, 2)  # (N, T * C, H, W): NCHW, see cpu_layout
        for i in range(len(self.blocks)):
            prefix = f"blocks.{i}."
            block = {
                k.removeprefix(prefix): v.flatten(0, 1)
                for k, v in params.items()
                if k.startswith(prefix)
            }
            h = F.conv2d(h, block["conv.weight"], block["conv.bias"], padding=1, groups=tasks)
            h = F.batch_norm(h, None, None, block["norm.weight"], block["norm.bias"], training=True)
            h = F.relu(F.max_pool2d(h, 2))  # as ConvBlock
        return h.reshape(n, tasks, -1).transpose(0, 1)


class Conv4(nn.Module):
    """Conv4 backbone plus a linear head with ``out_features`` outputs (the N of N-way)."""

    def __init__(
        self, out_features: int, in_channels: int = 1, filters: int = 64, image_size: int = 28
    ) -> None:
        super().__init__()
        self.backbone = Conv4Backbone(in_channels, filters, image_size)
        self.head = nn.Linear(self.backbone.out_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))
