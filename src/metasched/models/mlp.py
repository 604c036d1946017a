"""The fingerprint MLP of the ATS supplement (B.1), for drug activity regression."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from metasched.models.norm import TaskBatchNorm


class FingerprintBackbone(nn.Module):
    """Two fully connected layers of ``hidden`` units with LeakyReLU.

    ``batch_norm=True`` adds the per-task batch norm the reference code puts after each layer.
    Accepts (N, F) or (T, N, F).
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
        lead = x.shape[:-1]
        tasks = lead[0] if len(lead) == 2 else 1
        h = x.reshape(-1, x.shape[-1])
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if self.norms is not None:
                h = self.norms[i](h, tasks)
            h = F.leaky_relu(h)
        return h.reshape(*lead, -1)

    def grouped(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Features of T tasks at once, each with its own weights: (T, N, F) to (T, N, D)."""
        h = x
        for i in range(len(self.layers)):
            weight, bias = params[f"layers.{i}.weight"], params[f"layers.{i}.bias"]
            h = torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))
            if self.norms is not None:
                var, mean = torch.var_mean(h, dim=1, keepdim=True, correction=0)
                scale, shift = params[f"norms.{i}.weight"], params[f"norms.{i}.bias"]
                h = (h - mean) * torch.rsqrt(var + 1e-5) * scale.unsqueeze(1) + shift.unsqueeze(1)
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
