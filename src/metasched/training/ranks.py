"""Task parallelism over processes: what each rank computes and how the ranks agree.

Every rank draws the same tasks from the same seeded stream, works on its own contiguous share
of them, and the ranks then gather the per-task rows and sum the meta-gradients, so each holds
the whole pool's results and takes the same update. One process is the case ``size == 1``, in
which nothing is sent (docs/plans/multi-device.md, step 2).
"""

from __future__ import annotations

import os
import socket
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist

from metasched.learners.results import TaskResults
from metasched.training.signals import die_with_parent

Item = TypeVar("Item")

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

    def mine(self, items: Sequence[Item]) -> list[Item]:
        """This rank's share of ``items``."""
        return [items[i] for i in self.share(len(items))]

    @abstractmethod
    def gather_rows(self, rows: torch.Tensor | None, count: int) -> torch.Tensor:
        """Every rank's ``rows`` (this rank's share of ``count`` tasks, one row each, same
        trailing shape on every rank; None for an empty share) stacked in task order, on
        every rank."""

    @abstractmethod
    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """The element-wise sum of ``values`` over ranks, on every rank."""

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is true on some rank (so that every rank stops together)."""
        return bool(self.sum(torch.tensor([float(flag)])).item() > 0)

    @abstractmethod
    def barrier(self) -> None:
        """Waits for every rank (before reading what rank 0 wrote)."""

    def map_rows(
        self, function: Callable[[Item], torch.Tensor], items: Sequence[Item]
    ) -> torch.Tensor:
        """``function`` on this rank's share of ``items``, every rank's rows gathered in order."""
        mine = self.mine(items)
        return self.gather_rows(
            torch.stack([function(x) for x in mine]) if mine else None, len(items)
        )

    def gather_results(self, mine: TaskResults, count: int) -> TaskResults:
        """Every rank's per-task rows of :class:`TaskResults`, in task order; the graphs stay
        with the rank that computed them and are dropped here."""
        if self.size == 1:
            return mine.without_graphs()
        some = len(mine) > 0

        def gathered(rows: torch.Tensor | None) -> torch.Tensor:
            return self.gather_rows(rows if some else None, count)

        stats = None if mine.stats is None else mine.stats.map(gathered)
        metrics = None
        if mine.metrics is not None:
            names = [sorted(mine.metrics)]
            if count < self.size:  # an empty share knows no names: rank 0's are everyone's
                dist.broadcast_object_list(names, src=0)
            metrics = {name: gathered(mine.metrics.get(name)) for name in names[0]}
        return replace(
            mine,
            losses=gathered(mine.losses),
            scores=gathered(mine.scores),
            stats=stats,
            graphs=None,
            metrics=metrics,
        )

    @abstractmethod
    def sum_gradient(self, gradient: Gradient) -> Gradient:
        """The sum over ranks of each parameter's gradient; a parameter that no rank's loss
        reaches stays None, one that some rank's reaches counts as zero where it did not."""


class OneProcess(Ranks):
    """A single process: every share is the whole, nothing is sent."""

    rank, size = 0, 1

    def gather_rows(self, rows: torch.Tensor | None, count: int) -> torch.Tensor:
        if rows is None:
            raise ValueError("one process holds every task: its rows cannot be empty")
        return rows

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        return values

    def barrier(self) -> None:
        pass

    def sum_gradient(self, gradient: Gradient) -> Gradient:
        return gradient


class ProcessGroup(Ranks):
    """The ranks of an initialised ``torch.distributed`` process group (gloo on CPU, NCCL on
    CUDA)."""

    def __init__(self) -> None:
        if not dist.is_initialized():
            raise RuntimeError("torch.distributed is not initialised (init_process_group)")
        self.rank, self.size = dist.get_rank(), dist.get_world_size()
        self.device = torch.device("cuda") if dist.get_backend() == "nccl" else torch.device("cpu")

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        summed = values.to(self.device, copy=True)
        dist.all_reduce(summed)
        return summed.to(values.device)

    def barrier(self) -> None:
        dist.barrier()

    def gather_rows(self, rows: torch.Tensor | None, count: int) -> torch.Tensor:
        shares = [share(count, r, self.size) for r in range(self.size)]
        longest = max(len(s) for s in shares)
        if count < self.size:  # some shares are empty: rank 0's (never empty) gives the shape
            like = [None if rows is None else (rows.shape[1:], rows.dtype)]
            dist.broadcast_object_list(like, src=0)
            trailing, dtype = like[0]  # type: ignore[misc]
            if rows is None:
                rows = torch.zeros((0, *trailing), dtype=dtype, device=self.device)
        assert rows is not None
        home = rows.device  # NCCL sends only CUDA tensors: rows travel on the group's device
        # all_gather needs equal shapes: pad every share to the longest, then drop the padding
        padded = torch.zeros((longest, *rows.shape[1:]), dtype=rows.dtype, device=self.device)
        padded[: len(rows)] = rows.to(self.device)
        parts = [torch.empty_like(padded) for _ in range(self.size)]
        dist.all_gather(parts, padded)
        gathered = torch.cat([part[: len(s)] for part, s in zip(parts, shares, strict=True)])
        return gathered.to(home)

    def sum_gradient(self, gradient: Gradient) -> Gradient:
        flags = [g is not None for g in gradient]
        local = torch.tensor(flags, dtype=torch.int32, device=self.device)
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


def free_port() -> int:
    """A TCP port free on this machine now, for a local group's rendezvous."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def current_ranks() -> Ranks:
    """The process group this process belongs to, or one process."""
    return ProcessGroup() if dist.is_available() and dist.is_initialized() else OneProcess()


def leave_process_group(finished: bool) -> None:
    """Tears down this process's group, if it joined one. Left to the interpreter's exit, a
    gloo group can abort the process ("terminate called without an active exception") after
    the run ended well. A rank that ``finished`` first waits (at most a minute) until every
    rank has, so that none closes its connections while a peer is still using them; a rank
    that failed leaves at once (its peers may be gone).

    Example:
        >>> leave_process_group(finished=True)  # one process: nothing to leave
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    if finished and dist.get_world_size() > 1:
        try:
            if dist.get_backend() == "gloo":
                dist.monitored_barrier(timeout=timedelta(minutes=1))
            else:
                dist.barrier()
        except RuntimeError:
            pass  # a peer stopped early: it reports its own failure; leave anyway
    dist.destroy_process_group()


def join_process_group(device: str) -> Ranks:
    """Joins the group that ``torchrun`` (or ``metasched train --nproc``) started this process
    in, from its environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT): NCCL when training
    on CUDA, gloo otherwise. Without that environment: one process. A launcher's single rank
    joins a group of one (nothing is then sent; timing it measures the layer's overhead)."""
    if "WORLD_SIZE" not in os.environ or "MASTER_ADDR" not in os.environ:
        return OneProcess()
    if "METASCHED_LAUNCHER" in os.environ:  # a rank of --nproc: it goes when the launcher does
        die_with_parent()
    if not dist.is_initialized():
        cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        elif "OMP_NUM_THREADS" not in os.environ:  # the machine's cores, shared out
            local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))
        dist.init_process_group("nccl" if cuda else "gloo")
    return ProcessGroup()
