"""Conv4: four [conv 3x3, batch norm, ReLU, max-pool 2] blocks and a linear head."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from metasched.errors import MetaschedError
from metasched.models.grouped import shared_weights
from metasched.models.layout import cpu_layout
from metasched.models.norm import TaskBatchNorm, task_batch_norm


def conv_block(
    h: torch.Tensor, block: dict[str, torch.Tensor], tasks: int, eps: float = 1e-5
) -> torch.Tensor:
    """conv 3x3, batch norm, ReLU, max-pool 2 for T tasks, each with its own weights.

    ``h`` is (N, T * C, H, W): task t's channels form group t. ``block`` holds the block's
    parameters with a leading task dimension (``conv.weight`` (T, C', C, 3, 3), ...). Batch
    norm uses each task's own batch statistics. The rectifier runs after max-pooling: ReLU is
    monotone, so it commutes with the pooling, outputs and gradients are those of the textbook
    order, and it runs on a quarter of the activations (a uniform 84x84 ANIL iteration on CPU
    takes 8.5% less time: docs/benchmarks.md; ``tests/test_models.py`` checks the equality).
    """
    h = F.conv2d(
        h, block["conv.weight"].flatten(0, 1), block["conv.bias"].flatten(), 1, 1, 1, tasks
    )
    h = task_batch_norm(h, block["norm.weight"], block["norm.bias"], eps)
    return F.relu(F.max_pool2d(h, 2))


class ConvBlock(nn.Module):
    """The parameters of one :func:`conv_block`; calling it runs one task."""

    cancelled_by_norm = ("conv.bias",)  # batch norm subtracts it again: zero gradient

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.norm = TaskBatchNorm(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        block = {n: p.unsqueeze(0) for n, p in self.named_parameters()}
        return conv_block(x, block, 1, self.norm.eps)


class Conv4Backbone(nn.Module):
    """The feature extractor: (N, C, H, W) images to flat features (N, D).

    :meth:`grouped` is the one computation: T tasks at once, each with its own weights and
    batch statistics; calling the module runs it for one task (or for T tasks sharing the
    module's weights, given (T, N, C, H, W)). On CPUs a single task runs channels-last
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
        return shared_weights(self, x, 3)

    def grouped(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Features of T tasks at once, each with its own weights: (T, N, C, H, W) to (T, N, D).

        ``params`` holds this module's parameters with a leading task dimension T (e.g.
        ``blocks.0.conv.weight`` of shape (T, filters, C, 3, 3)). Tasks become convolution
        groups and batch-norm channels, so every task keeps its own batch statistics, and one
        backward pass gives each task its own weight gradients.
        """
        tasks, n = x.shape[:2]
        h = x.transpose(0, 1).flatten(1, 2)  # (N, T * C, H, W)
        if tasks == 1:  # channels-last grouped convolutions round differently: see cpu_layout
            h = cpu_layout(h)
        for i in range(len(self.blocks)):
            prefix = f"blocks.{i}."
            block = {k.removeprefix(prefix): v for k, v in params.items() if k.startswith(prefix)}
            h = conv_block(h, block, tasks)
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
