"""The fingerprint MLP of the ATS supplement (B.1), for drug activity regression."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from metasched.models.grouped import shared_weights, task_linear
from metasched.models.norm import TaskBatchNorm, task_batch_norm


class FingerprintBackbone(nn.Module):
    """Two fully connected layers of ``hidden`` units with LeakyReLU.

    ``batch_norm=True`` adds the per-task batch norm the reference code puts after each layer.
    Accepts (N, F) or (T, N, F); :meth:`grouped` is the one computation.
    """

    def __init__(self, in_features: int, hidden: int = 500, batch_norm: bool = False) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(in_features, hidden), nn.Linear(hidden, hidden)])
        self.norms = (
            nn.ModuleList(TaskBatchNorm(hidden) for _ in self.layers) if batch_norm else None
        )
        self.out_features = hidden

    @property
    def cancelled_by_norm(self) -> tuple[str, ...]:
        """With batch norm, each layer's bias is subtracted again: zero gradient."""
        return tuple(f"layers.{i}.bias" for i in range(len(self.layers))) if self.norms else ()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return shared_weights(self, x, 1)

    def grouped(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Features of T tasks at once, each with its own weights: (T, N, F) to (T, N, D)."""
        h = x
        for i in range(len(self.layers)):
            h = task_linear(h, params[f"layers.{i}.weight"], params[f"layers.{i}.bias"])
            if self.norms is not None:
                tasks, n, width = h.shape
                flat = h.transpose(0, 1).reshape(n, tasks * width)  # task t: channel group t
                flat = task_batch_norm(flat, params[f"norms.{i}.weight"], params[f"norms.{i}.bias"])
                h = flat.reshape(n, tasks, width).transpose(0, 1)
            h = F.leaky_relu(h)
        return h


class FingerprintMLP(nn.Module):
    """Fingerprint backbone plus a linear output (one value per compound by default)."""

    def __init__(
        self, in_features: int, out_features: int = 1, hidden: int = 500, batch_norm: bool = False
    ) -> None:
        super().__init__()
        self.backbone = FingerprintBackbone(in_features, hidden, batch_norm)
        self.head = nn.Linear(hidden, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))
