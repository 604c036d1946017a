"""Pool statistics: what a task scheduler sees of each candidate task.

They are plain tensors, so a scheduler can be fed from any training loop: the query loss after
inner-loop adaptation, and (when asked for) per layer the norms of the support-loss and
query-loss gradients at the meta-initialisation and their inner product.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PoolStats:
    """Statistics of P candidate tasks at the meta-parameters θ0, over L layers.

    Attributes:
        query_loss: (P,) query loss after adapting to the support set.
        support_norm: (P, L) ‖∇ L(support; θ0)‖ per layer (None if not computed).
        query_norm: (P, L) ‖∇ L(query; θ0)‖ per layer (None if not computed).
        dot: (P, L) ⟨∇ L(support; θ0), ∇ L(query; θ0)⟩ per layer (None if not computed).
    """

    query_loss: torch.Tensor
    support_norm: torch.Tensor | None = None
    query_norm: torch.Tensor | None = None
    dot: torch.Tensor | None = None

    def __post_init__(self) -> None:
        pool = self.query_loss.shape[0]
        if self.query_loss.dim() != 1:
            raise ValueError(f"PoolStats: query_loss must be (P,); got {self.query_loss.shape}")
        given = [t for t in (self.support_norm, self.query_norm, self.dot) if t is not None]
        if given and len(given) != 3:
            raise ValueError("PoolStats: give support_norm, query_norm and dot together")
        if given:
            shape = given[0].shape
            if len(shape) != 2 or shape[0] != pool or any(t.shape != shape for t in given):
                raise ValueError(
                    f"PoolStats: support_norm, query_norm and dot must share one (P, L) shape"
                    f" with P = {pool}; got {[tuple(t.shape) for t in given]}"
                )

    @property
    def pool_size(self) -> int:
        return int(self.query_loss.shape[0])

    @property
    def has_gradients(self) -> bool:
        return self.dot is not None

    def gradient_terms(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(support_norm, query_norm, dot), or an error if they were not computed."""
        if self.support_norm is None or self.query_norm is None or self.dot is None:
            raise ValueError("these pool statistics hold no gradient statistics")
        return self.support_norm, self.query_norm, self.dot

    @property
    def num_layers(self) -> int:
        return int(self.gradient_terms()[2].shape[1])

    @property
    def cosine(self) -> torch.Tensor:
        """(P, L) cosine similarity of support and query gradients (eps 1e-8, as the reference)."""
        support, query, dot = self.gradient_terms()
        return dot / (support * query).clamp_min(1e-8)

    @property
    def sum_norm(self) -> torch.Tensor:
        """(P, L) ‖∇ L(support) + ∇ L(query)‖ per layer."""
        support, query, dot = self.gradient_terms()
        return (support**2 + query**2 + 2 * dot).clamp_min(0).sqrt()

    def map(self, transform: Callable[[torch.Tensor], torch.Tensor]) -> PoolStats:
        """The same columns, each passed through ``transform`` (a move, a gather across ranks)."""
        gradients = (self.support_norm, self.query_norm, self.dot)
        return PoolStats(
            transform(self.query_loss), *(None if t is None else transform(t) for t in gradients)
        )

    def to(self, device: torch.device | str) -> PoolStats:
        """The same statistics on ``device``."""
        return self.map(lambda t: t.to(device))

    @staticmethod
    def cat(parts: Sequence[PoolStats]) -> PoolStats:
        """The rows of several pools' statistics, in order (chunks of a pool, ranks' shares)."""

        def joined(name: str) -> torch.Tensor | None:
            column = [getattr(part, name) for part in parts]
            return None if column[0] is None else torch.cat(column)

        gradients = (joined("support_norm"), joined("query_norm"), joined("dot"))
        return PoolStats(torch.cat([part.query_loss for part in parts]), *gradients)
