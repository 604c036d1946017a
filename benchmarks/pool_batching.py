"""Three ways to get every candidate's per-layer support and query gradients at θ0.

* ``loop``: one task at a time, two ``autograd.grad`` calls (the CPU default);
* ``grouped``: all tasks as convolution groups with per-task weight copies, one backward pass
  (the CUDA default, ``learner.batching=grouped``);
* ``vmap``: ``torch.func.vmap`` over tasks of ``torch.func.grad`` of each set's loss.

Each computes the pool statistics' gradient part (norms and inner products per layer) for
P = 10 candidates; the script checks that the three agree, then times them interleaved in
rounds (medians) in this process. The Markdown table goes to stdout.

    python benchmarks/pool_batching.py                 # CPU
    python benchmarks/pool_batching.py --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

sys.path.insert(0, str(Path(__file__).parent))
from ats_speed import CONFIGS, make_trainer, timed

from metasched.learners.functional import gradient_rows
from metasched.models.layout import keep_nchw
from metasched.tasks import EpisodeBatch

Agreement = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (P, L) norms, norms, dots


def timings(config_name: str, device_name: str, rounds: int) -> dict[str, float]:
    """Checks that the three agree on P candidates, then times them (median seconds)."""
    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer(config_name, "anil", "ats", device_name, Path(tmp), "loop")
    learner, device = trainer.parts.learner, trainer.parts.device
    rng = np.random.default_rng(0)
    pool = [trainer.parts.samplers["train"].sample(rng).to(device) for _ in range(10)]
    batch = EpisodeBatch.stack(pool)
    params = learner.parameters()
    layers = learner.scored_layers()
    model = learner.model

    def set_loss(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(model, p, (x,)), y)

    def loop() -> Agreement:
        rows = []
        for e in pool:
            wanted = [params[n] for n in layers]
            support = torch.autograd.grad(set_loss(params, e.support_x, e.support_y), wanted)
            query = torch.autograd.grad(set_loss(params, e.query_x, e.query_y), wanted)
            one = [g.unsqueeze(0) for g in wanted]
            rows.append(
                gradient_rows(
                    [g.unsqueeze(0) for g in support], [g.unsqueeze(0) for g in query], one
                )
            )
        return (
            torch.cat([r[0] for r in rows]),
            torch.cat([r[1] for r in rows]),
            torch.cat([r[2] for r in rows]),
        )

    def grouped() -> Agreement:
        learner.batching = "grouped"  # the learner's own grouped measurement, adaptation included
        stats = learner.measure_pool(params, pool, keep_graph=False).stats
        learner.batching = "loop"
        assert stats is not None
        return stats.gradient_terms()

    def vmapped() -> Agreement:  # in NCHW order: vmap cannot clone to channels-last
        detached = {n: p.detach() for n, p in params.items()}

        def one_task(
            sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor, qy: torch.Tensor
        ) -> Agreement:
            support = grad(set_loss)(detached, sx, sy)
            query = grad(set_loss)(detached, qx, qy)
            s = torch.stack([support[n].flatten().norm() for n in layers])
            q = torch.stack([query[n].flatten().norm() for n in layers])
            d = torch.stack([(support[n] * query[n]).sum() for n in layers])
            return s, q, d

        with keep_nchw():
            return vmap(one_task)(batch.support_x, batch.support_y, batch.query_x, batch.query_y)

    methods: dict[str, Callable[[], Agreement]] = {
        "loop": loop,
        "grouped": grouped,
        "vmap": vmapped,
    }
    reference = loop()
    scale = torch.cat(reference, 1).abs().max()
    for name, method in methods.items():
        for mine, theirs in zip(method(), reference):
            # a sanity check (exact equality is tested in tests/ on small models): at full size
            # fp32 summation order alone moves some per-layer statistics by up to ~1e-2 of the
            # largest one, for the loop in either memory layout as for the others
            if ((mine - theirs).abs() > 1e-2 * scale).any():
                raise AssertionError(f"{name} disagrees with the loop")
    samples: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(rounds):
        for name, method in methods.items():
            samples[name].append(timed(method, device))
    return {name: statistics.median(s) for name, s in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {args.device}, {torch.get_num_threads()} threads, P=10")
    print()
    print("| configuration | loop s | grouped s | vmap s | grouped ÷ loop | vmap ÷ loop |")
    print("|---|---|---|---|---|---|")
    for config_name in ("glyphs", "mini84"):
        t = timings(config_name, args.device, args.rounds)
        cells = [CONFIGS[config_name], f"{t['loop']:.3f}", f"{t['grouped']:.3f}"]
        cells += [f"{t['vmap']:.3f}", f"{t['grouped'] / t['loop']:.2f}"]
        cells += [f"{t['vmap'] / t['loop']:.2f}"]
        print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
