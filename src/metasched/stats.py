"""Pool statistics: what a task scheduler sees of each candidate task.

They are plain tensors, so a scheduler can be fed from any training loop: the query loss after
inner-loop adaptation, and per layer the norms of the support-loss and query-loss gradients at
the meta-initialisation and their inner product.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PoolStats:
    """Statistics of P candidate tasks at the meta-parameters θ0, over L layers.

    Attributes:
        query_loss: (P,) query loss after adapting to the support set.
        support_norm: (P, L) ‖∇ L(support; θ0)‖ per layer.
        query_norm: (P, L) ‖∇ L(query; θ0)‖ per layer.
        dot: (P, L) ⟨∇ L(support; θ0), ∇ L(query; θ0)⟩ per layer.
    """

    query_loss: torch.Tensor
    support_norm: torch.Tensor
    query_norm: torch.Tensor
    dot: torch.Tensor

    def __post_init__(self) -> None:
        pool = self.query_loss.shape[0]
        shape = self.dot.shape
        if self.query_loss.dim() != 1 or len(shape) != 2 or shape[0] != pool:
            raise ValueError(f"PoolStats: query_loss must be (P,) and dot (P, L); got {shape}")
        if self.support_norm.shape != shape or self.query_norm.shape != shape:
            raise ValueError("PoolStats: support_norm, query_norm and dot must share one shape")

    @property
    def pool_size(self) -> int:
        return int(self.query_loss.shape[0])

    @property
    def num_layers(self) -> int:
        return int(self.dot.shape[1])

    @property
    def cosine(self) -> torch.Tensor:
        """(P, L) cosine similarity of support and query gradients (eps 1e-8, as the reference)."""
        return self.dot / (self.support_norm * self.query_norm).clamp_min(1e-8)

    @property
    def sum_norm(self) -> torch.Tensor:
        """(P, L) ‖∇ L(support) + ∇ L(query)‖ per layer."""
        squared = self.support_norm**2 + self.query_norm**2 + 2 * self.dot
        return squared.clamp_min(0).sqrt()

    def to(self, device: torch.device | str) -> PoolStats:
        """The same statistics on ``device``."""
        return PoolStats(
            self.query_loss.to(device),
            self.support_norm.to(device),
            self.query_norm.to(device),
            self.dot.to(device),
        )
