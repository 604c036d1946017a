"""ResNet-12, the backbone most few-shot work now uses (TADAM, Oreshkin et al., NeurIPS 2018;
MetaOptNet, Lee et al., CVPR 2019), as a plain ``nn.Module`` with a linear head.

It has no grouped computation: the learners run it per task through
:func:`torch.func.functional_call` (see :meth:`metasched.learners.MetaLearner.features`),
the path any backbone takes. Batch norm uses each batch's own statistics, in training and
evaluation alike, as Conv4's does (transductive, no running statistics).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, track_running_stats=False)


class ResidualBlock(nn.Module):
    """Three conv 3x3 + batch norm layers (leaky ReLU 0.1 between), a 1x1 conv + batch norm
    shortcut, leaky ReLU and max-pool 2."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm1 = _norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = _norm(out_channels)
        self.conv3 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm3 = _norm(out_channels)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.shortcut_norm = _norm(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.norm1(self.conv1(x)), 0.1)
        h = F.leaky_relu(self.norm2(self.conv2(h)), 0.1)
        h = self.norm3(self.conv3(h))
        h = F.leaky_relu(h + self.shortcut_norm(self.shortcut(x)), 0.1)
        return F.max_pool2d(h, 2, ceil_mode=True)


class ResNet12Backbone(nn.Module):
    """Four residual blocks of widths (w, 2.5w, 5w, 10w) (64 gives the usual 64-160-320-640)
    and global average pooling: (N, C, H, W) images to (N, 10w) features."""

    def __init__(self, in_channels: int = 3, width: int = 64) -> None:
        super().__init__()
        widths = [width, int(2.5 * width), 5 * width, 10 * width]
        blocks, previous = [], in_channels
        for channels in widths:
            blocks.append(ResidualBlock(previous, channels))
            previous = channels
        self.blocks = nn.Sequential(*blocks)
        self.out_features = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x).mean(dim=(2, 3))


class ResNet12(nn.Module):
    """ResNet-12 backbone plus a linear head with ``out_features`` outputs.

    Example:
        >>> model = ResNet12(5, in_channels=1, width=4)
        >>> model(torch.rand(10, 1, 28, 28)).shape
        torch.Size([10, 5])
    """

    def __init__(self, out_features: int, in_channels: int = 3, width: int = 64) -> None:
        super().__init__()
        self.backbone = ResNet12Backbone(in_channels, width)
        self.head = nn.Linear(self.backbone.out_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))
