"""Task parallelism over processes: what each rank computes and how the ranks agree.

Every rank draws the same tasks from the same seeded stream, works on its own contiguous share
of them, and the ranks then gather the per-task rows and sum the meta-gradients, so each holds
the whole pool's results and takes the same update. One process is the case ``size == 1``, in
which nothing is sent (docs/plans/multi-device.md, step 2).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
import torch.distributed as dist

Gradient = list[torch.Tensor | None]


def share(count: int, rank: int, size: int) -> range:
    """The contiguous slice of ``count`` items that ``rank`` of ``size`` works on (the first
    ``count % size`` ranks take one more, so the shares differ by at most one)."""
    base, extra = divmod(count, size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (rank < extra))


class Ranks(ABC):
    """The processes an iteration's tasks are spread over."""

    rank: int
    size: int

    @property
    def is_main(self) -> bool:
        """Whether this rank writes checkpoints, metrics and the progress bar."""
        return self.rank == 0

    def share(self, count: int) -> range:
        """This rank's tasks among ``count``."""
        return share(count, self.rank, self.size)

    @abstractmethod
    def gather_rows(self, rows: torch.Tensor, count: int) -> torch.Tensor:
        """Every rank's ``rows`` (this rank's share of ``count`` tasks, one row each, same
        trailing shape on every rank) stacked in task order, on every rank."""

    @abstractmethod
    def sum_gradient(self, gradient: Gradient) -> Gradient:
        """The sum over ranks of each parameter's gradient; a parameter that no rank's loss
        reaches stays None, one that some rank's reaches counts as zero where it did not."""


class OneProcess(Ranks):
    """A single process: every share is the whole, nothing is sent."""

    rank, size = 0, 1

    def gather_rows(self, rows: torch.Tensor, count: int) -> torch.Tensor:
        return rows

    def sum_gradient(self, gradient: Gradient) -> Gradient:
        return gradient


class ProcessGroup(Ranks):
    """The ranks of an initialised ``torch.distributed`` process group (gloo on CPU, NCCL on
    CUDA)."""

    def __init__(self) -> None:
        if not dist.is_initialized():
            raise RuntimeError("torch.distributed is not initialised (init_process_group)")
        self.rank, self.size = dist.get_rank(), dist.get_world_size()

    def gather_rows(self, rows: torch.Tensor, count: int) -> torch.Tensor:
        shares = [share(count, r, self.size) for r in range(self.size)]
        longest = max(len(s) for s in shares)
        # all_gather needs equal shapes: pad every share to the longest, then drop the padding
        padded = rows.new_zeros((longest, *rows.shape[1:]))
        padded[: len(rows)] = rows
        parts = [torch.empty_like(padded) for _ in range(self.size)]
        dist.all_gather(parts, padded.contiguous())
        return torch.cat([part[: len(s)] for part, s in zip(parts, shares, strict=True)])

    def sum_gradient(self, gradient: Gradient) -> Gradient:
        local = torch.tensor([g is not None for g in gradient], dtype=torch.int32)
        # per parameter: reached on some rank; then whether some rank lacks one another has
        reached = local.clone()
        dist.all_reduce(reached, op=dist.ReduceOp.MAX)
        if not reached.any():
            return list(gradient)
        lacking = ((reached - local) > 0).any().int().reshape(1)
        dist.all_reduce(lacking, op=dist.ReduceOp.MAX)
        if lacking.item():
            shapes = self._shapes(gradient)
        else:  # every rank has the same parameters: the local shapes are everyone's
            shapes = [list(g.shape) if g is not None else [] for g in gradient]
        like = next((g for g in gradient if g is not None), None)
        here = [bool(r) for r in reached.tolist()]
        flat = torch.cat(
            [
                (g if g is not None else _zeros(shape, like)).reshape(-1)
                for g, shape, h in zip(gradient, shapes, here, strict=True)
                if h
            ]
        )
        dist.all_reduce(flat)  # one message for every parameter
        summed: Gradient = []
        offset = 0
        for shape, h in zip(shapes, here, strict=True):
            if not h:
                summed.append(None)
                continue
            numel = int(torch.Size(shape).numel())
            summed.append(flat[offset : offset + numel].reshape(tuple(shape)))
            offset += numel
        return summed

    def _shapes(self, gradient: Gradient) -> list[Sequence[int]]:
        """Each parameter's shape, from any rank whose loss reached it ([] where none did)."""
        local = [list(g.shape) if g is not None else None for g in gradient]
        everyone: list[list[list[int] | None] | None] = [None] * self.size
        dist.all_gather_object(everyone, local)
        shapes: list[Sequence[int]] = []
        for i in range(len(gradient)):
            known: Sequence[int] = []
            for rows in everyone:
                shape = None if rows is None else rows[i]
                if shape is not None:
                    known = shape
            shapes.append(known)
        return shapes


def _zeros(shape: Sequence[int], like: torch.Tensor | None) -> torch.Tensor:
    if like is None:
        return torch.zeros(tuple(shape))
    return torch.zeros(tuple(shape), dtype=like.dtype, device=like.device)
