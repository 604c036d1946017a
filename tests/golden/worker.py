"""Trains golden runs in this process and writes their outcomes; started by
:func:`tests.golden.replay.replay` with the portable-arithmetic environment.

    python -m tests.golden.worker OUT.json WORKDIR CASE [CASE ...] [--mutate ulp]

``--mutate ulp`` moves the inner loop's step by one float32 ulp (a deliberate change to a
learner that the comparison must catch).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from metasched.config import load_config
from metasched.training.checkpoint import load_checkpoint
from metasched.training.metrics import read_metrics, without_wall_clock
from metasched.training.provenance import results_version
from metasched.training.trainer import Trainer
from tests.golden.cases import CASES, Case


def portable_arithmetic() -> None:
    """The in-process half of the portable settings (the environment holds the rest)."""
    torch.backends.mkldnn.enabled = False  # oneDNN picks kernels by the CPU's instructions
    torch.set_num_threads(1)


def platform_probe() -> str:
    """A digest of what the operations golden runs use give here: convolution, batch norm,
    pooling, linear layers, an LSTM, softmax, exp and log, forward and backward."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 12, 12, generator=generator).requires_grad_()
    conv = torch.nn.Conv2d(3, 5, 3, padding=1)
    lstm = torch.nn.LSTM(2, 3, bidirectional=True, batch_first=True)
    linear = torch.nn.Linear(5 * 36, 7)
    with torch.no_grad():
        for parameter in [*conv.parameters(), *lstm.parameters(), *linear.parameters()]:
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    h = torch.nn.functional.batch_norm(conv(x), None, None, training=True).relu()
    h = torch.nn.functional.max_pool2d(h, 2).flatten(1)
    out, _ = lstm(linear(h)[:, :6].reshape(4, 3, 2))
    loss = torch.log_softmax(out.flatten(1), -1).mean() + out.exp().mean().log()
    grads = torch.autograd.grad(loss, [x, conv.weight, *lstm.parameters()])
    digest = hashlib.sha256()
    for tensor in (loss.detach(), *grads):
        digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def tensor_digest(state: Any) -> str:
    """A digest of every tensor in a nested state, keys in sorted order."""
    digest = hashlib.sha256()

    def walk(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            digest.update(value.detach().contiguous().cpu().numpy().tobytes())
        elif isinstance(value, dict):
            for key in sorted(value, key=str):
                digest.update(str(key).encode())
                walk(value[key])
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)
        elif isinstance(value, int | float | str | bool) or value is None:
            digest.update(repr(value).encode())

    walk(state)
    return digest.hexdigest()[:16]


def outcome(run_dir: Path) -> dict[str, Any]:
    """What a golden run recorded: its metrics records and summary without wall-clock times,
    and digests of its final meta-model and scheduler state."""
    records = [without_wall_clock(r) for r in read_metrics(run_dir / "metrics.jsonl")]
    summary = json.loads((run_dir / "summary.json").read_text())
    last = load_checkpoint(run_dir / "last.pt")
    return {
        "records": records,
        "summary": without_wall_clock(summary),
        "model": tensor_digest(last["model"]),
        "scheduler": tensor_digest(last["scheduler"]),
    }


def _rank(rank: int, size: int, rendezvous: str, run_dir: str, case: Case) -> None:
    portable_arithmetic()
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=size)
    try:
        Trainer.create(load_config(case.preset, case.overrides()), Path(run_dir)).fit(
            progress=False
        )
        dist.barrier()  # no rank tears the group down while another still talks in it
    finally:
        dist.destroy_process_group()


def run_case(name: str, workdir: Path) -> dict[str, Any]:
    """Trains golden case ``name`` in ``workdir/name`` and returns its outcome and versions."""
    case = CASES[name]
    run_dir = workdir / name
    config = load_config(case.preset, case.overrides())
    if case.ranks == 1:
        Trainer.create(config, run_dir).fit(progress=False)
    else:
        rendezvous = str(workdir / f"{name}.rendezvous")
        mp.spawn(_rank, args=(case.ranks, rendezvous, str(run_dir), case), nprocs=case.ranks)
    return {"versions": results_version(config), "outcome": outcome(run_dir)}


def mutate_by_one_ulp() -> None:
    """Moves every inner-loop step by one float32 ulp of its learning rate."""
    from metasched.learners import functional

    original = functional.sgd_steps

    def nudged(loss_of: Any, params: Any, adaptation: Any, create_graph: bool) -> Any:
        lr = float(np.nextafter(np.float32(adaptation.lr), np.float32(np.inf)))
        return original(loss_of, params, functional.Adaptation(lr, adaptation.steps), create_graph)

    functional.sgd_steps = nudged
    for module in list(sys.modules.values()):  # the learners imported it by name
        if getattr(module, "sgd_steps", None) is original:
            module.sgd_steps = nudged  # type: ignore[attr-defined]


def main(argv: list[str]) -> int:
    mutate = "--mutate" in argv
    if mutate:
        argv = [a for a in argv if a not in ("--mutate", "ulp")]
        mutate_by_one_ulp()
    out, workdir, *names = argv
    portable_arithmetic()
    results = {"platform": platform_probe(), "cases": {}}
    for name in names:
        results["cases"][name] = run_case(name, Path(workdir))
    Path(out).write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
