"""Task parallelism: two gloo processes must agree with one process to float round-off."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from metasched.training.ranks import OneProcess, ProcessGroup, share

TASKS = 5  # odd, so the two shares differ in size


@pytest.mark.parametrize("count", [0, 1, 5, 8, 13])
@pytest.mark.parametrize("size", [1, 2, 3, 8])
def test_shares_cover_every_task_once_and_differ_by_at_most_one(count, size) -> None:
    shares = [share(count, rank, size) for rank in range(size)]
    assert [i for s in shares for i in s] == list(range(count))
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def _problem() -> tuple[dict[str, torch.Tensor], list[tuple[torch.Tensor, torch.Tensor]]]:
    generator = torch.Generator().manual_seed(0)
    params = {
        "w": torch.randn(4, 3, generator=generator),
        "b": torch.randn(3, generator=generator),
        "first_only": torch.randn(3, generator=generator),  # only task 0's loss reaches it
        "unused": torch.randn(2, generator=generator),  # no loss reaches it
    }
    tasks = [(torch.randn(6, 4, generator=generator), torch.randn(6, 3, generator=generator))]
    tasks += [
        (torch.randn(6, 4, generator=generator), torch.randn(6, 3, generator=generator))
        for _ in range(4)
    ]
    return params, tasks


def _losses_and_gradient(tasks: range) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
    """The chosen tasks' losses and the weighted sum of their gradients."""
    params, data = _problem()
    leaves = {k: v.clone().requires_grad_() for k, v in params.items()}
    losses = []
    for t in tasks:
        x, y = data[t]
        bias = leaves["b"] + (leaves["first_only"] if t == 0 else 0)
        losses.append(((x @ leaves["w"] + bias - y) ** 2).mean())
    if not losses:
        return torch.zeros(0), [None] * len(leaves)
    weights = torch.linspace(0.5, 1.5, TASKS)[list(tasks)]
    total = (torch.stack(losses) * weights).sum()
    gradient = torch.autograd.grad(total, list(leaves.values()), allow_unused=True)
    return torch.stack(losses).detach(), list(gradient)


def _rank(rank: int, size: int, rendezvous: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=size)
    try:
        ranks = ProcessGroup()
        losses, gradient = _losses_and_gradient(ranks.share(TASKS))
        gathered = ranks.gather_rows(losses, TASKS)
        summed = ranks.sum_gradient(gradient)
        torch.save({"losses": gathered, "gradient": summed}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_gather_and_sum_what_one_process_computes(tmp_path) -> None:
    mp.spawn(_rank, args=(2, str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=2)
    losses, gradient = _losses_and_gradient(range(TASKS))
    one = OneProcess()
    assert one.share(TASKS) == range(TASKS) and one.sum_gradient(gradient) == gradient
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        torch.testing.assert_close(got["losses"], losses, rtol=0, atol=1e-6)
        assert got["gradient"][3] is None and gradient[3] is None  # no loss reaches "unused"
        for mine, reference in zip(got["gradient"][:3], gradient[:3], strict=True):
            torch.testing.assert_close(mine, reference, rtol=0, atol=1e-6)
    assert gradient[2] is not None and gradient[2].abs().sum() > 0  # rank 1 lacked it: zeros
