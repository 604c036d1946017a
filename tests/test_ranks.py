"""Task parallelism: two gloo processes must agree with one process to float round-off."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from metasched.cli import main
from metasched.config import load_config
from metasched.models import cancelled_parameters
from metasched.training.metrics import read_metrics
from metasched.training.ranks import OneProcess, ProcessGroup, share
from metasched.training.trainer import Trainer

from .conftest import tiny_overrides

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


def _train_rank(rank: int, size: int, rendezvous: str, run_dir: str, overrides: list[str]) -> None:
    """One rank of a task-parallel run; saves its final model and scheduler state."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=size)
    try:
        trainer = Trainer.create(load_config("glyphs-5w1s", overrides), Path(run_dir))
        trainer.fit(progress=False)
        torch.save(
            {
                "model": trainer.parts.model.state_dict(),
                "scheduler": trainer.scheduler.state_dict(),
            },
            Path(run_dir).parent / f"rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


def _tensors(state: object) -> list[torch.Tensor]:
    """Every tensor in a nested state, in a fixed order."""
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, dict):
        return [t for key in sorted(state, key=str) for t in _tensors(state[key])]
    if isinstance(state, list | tuple):
        return [t for item in state for t in _tensors(item)]
    return []


@pytest.mark.parametrize("scheduler", ["ats", "uniform", "gated", "proxy"])
def test_two_gloo_ranks_train_as_one_process(tmp_path, glyphs, scheduler: str) -> None:
    """A few iterations on 2 gloo processes, each measuring and adapting half of the pool and
    of the chosen, validation and test tasks: the same chosen tasks, and the meta-parameters
    and the scheduler's parameters of one process to 1e-6, on both ranks."""
    overrides = tiny_overrides(
        **{
            "scheduler.name": scheduler,
            "scheduler.pool_size": 5,  # odd: the ranks' shares differ in size
            "scheduler.ats.warmup": 2,
            "scheduler.gated.candidate_cost": 10,  # off but for one measured pool in two
            "scheduler.gated.check_every": 2,
            "learner.inner_steps": 2,
            "learner.eval_inner_steps": 2,
            "task.noise_ratio": 0.5,
            "train.iterations": 4,
            "train.val_every": 2,
            "train.val_tasks": 5,
            "train.test_tasks": 5,
            "train.reward_tasks_per_update": 1,
        }
    )
    torch.set_num_threads(1)
    one = Trainer.create(load_config("glyphs-5w1s", overrides), tmp_path / "one")
    one.fit(progress=False)
    spawn = (2, str(tmp_path / "rendezvous"), str(tmp_path / "two" / "run"), overrides)
    mp.spawn(_train_rank, args=spawn, nprocs=2)
    records = {
        name: [r for r in read_metrics(path / "metrics.jsonl") if r["kind"] == "train"]
        for name, path in (("one", tmp_path / "one"), ("two", tmp_path / "two" / "run"))
    }
    assert len(records["one"]) == len(records["two"]) >= 4
    assert [r["chosen"] for r in records["two"]] == [r["chosen"] for r in records["one"]]
    # A bias before batch norm, or one shared by all logits of a softmax, has a zero gradient
    # up to round-off, which Adam scales to steps of ±lr: its value is noise in either run
    # and changes no output, so it is left out.
    cancelled = cancelled_parameters(one.parts.model)
    network = getattr(one.scheduler, "network", None)
    invariant = set(getattr(network, "shift_invariant", ()))

    def compared(model: dict[str, torch.Tensor], scheduler: dict) -> list[torch.Tensor]:
        kept = {name: value for name, value in model.items() if name not in cancelled}
        if "network" in scheduler:
            network = scheduler["network"]
            scheduler = {
                **scheduler,
                "network": {k: v for k, v in network.items() if k not in invariant},
            }
        return _tensors({"model": kept, "s": scheduler})

    expected = compared(one.parts.model.state_dict(), one.scheduler.state_dict())
    assert len(expected) > (10 if scheduler == "ats" else 5)
    for rank in range(2):
        got = torch.load(tmp_path / "two" / f"rank{rank}.pt", weights_only=False)
        tensors = compared(got["model"], got["scheduler"])
        assert len(tensors) == len(expected)
        for mine, reference in zip(tensors, expected, strict=True):
            torch.testing.assert_close(mine, reference, rtol=0, atol=1e-6)
    # the meta-model moved: the comparison is not of two untouched initialisations
    start = Trainer.create(load_config("glyphs-5w1s", overrides), tmp_path / "start")
    moved = [
        (a - b).abs().max().item()
        for a, b in zip(
            start.parts.model.state_dict().values(), one.parts.model.state_dict().values()
        )
    ]
    assert max(moved) > 1e-4


def test_nproc_launches_ranks_and_a_run_resumes_on_another_count(tmp_path, glyphs) -> None:
    """``metasched train --nproc 2`` trains on two processes; the run then resumes on one and
    ends with the records of a run trained on one process throughout."""
    settings = tiny_overrides(
        **{
            "scheduler.name": "ats",
            "scheduler.pool_size": 3,
            "scheduler.ats.warmup": 1,
            "learner.inner_steps": 1,
            "learner.eval_inner_steps": 1,
            "train.iterations": 4,
            "train.val_every": 2,
            "train.checkpoint_every": 2,
            "train.val_tasks": 3,
            "train.test_tasks": 3,
        }
    )
    command = ["train", "--config", "glyphs-5w1s", "--quiet"]
    command += [arg for setting in settings for arg in ("--set", setting)]
    two, one = tmp_path / "two", tmp_path / "one"
    assert main([*command, "--run-dir", str(two), "--nproc", "2"]) == 0
    assert (two / "summary.json").is_file() and not list(two.glob("*.tmp"))
    longer = ["--set", "train.iterations=6"]
    assert main(["train", "--resume", str(two), *longer, "--quiet"]) == 0
    assert main([*command, *longer, "--run-dir", str(one)]) == 0
    records = [
        [r for r in read_metrics(run / "metrics.jsonl") if r["kind"] != "test"]
        for run in (one, two)
    ]
    assert len(records[0]) == len(records[1]) > 6
    for a, b in zip(*records, strict=True):
        assert a["kind"] == b["kind"] and a["iteration"] == b["iteration"]
        assert a.get("chosen") == b.get("chosen")
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
